"""Search benchmark: warm latency over 1,000 workflows, cold indexing cost, recall.

    uv run python bench/bench_search.py                       # the offline test model
    uv run python bench/bench_search.py --model BAAI/bge-small-en-v1.5
    uv run python bench/bench_search.py --session             # also end to end via Session

Figures:
* model load time;
* cold indexing of 1,000 workflows (every text embedded, vectors written to a
  FileStorage cache), and a new process's warm-up from that cache;
* rank() latency p50/p90 over 1,000 workflows with a warm cache, for queries
  never seen before (the query is embedded) and for repeated ones, next to the
  lexical ranker over the same documents;
* recall@1/@3 of lexical, semantic and combined ranking on the labelled set,
  on each split of the paraphrased queries (tuning, extra tuning, held-out,
  fresh held-out), and how combined recall moves with the lexical weight;
* with --session: Session.search_workflows p50/p90 over 1,000 stored workflows.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.search.eval_set import (  # noqa: E402
    LIBRARY,
    PARAPHRASED_FRESH,
    PARAPHRASED_HELD_OUT,
    PARAPHRASED_TUNING,
    PARAPHRASED_TUNING_EXTRA,
    all_labelled,
    document,
    evaluate,
    library_documents,
    local_model_dir,
    recall_table,
)

from py_code_mode import Session  # noqa: E402
from py_code_mode.search.embeddings import Embedder  # noqa: E402
from py_code_mode.search.lexical import SearchDocument  # noqa: E402
from py_code_mode.search.ranker import LexicalRanker  # noqa: E402
from py_code_mode.search.semantic import HybridRanker  # noqa: E402
from py_code_mode.storage.file import FileStorage  # noqa: E402

QUALIFIERS = [
    ("v2", "second version with a cleaner interface"),
    ("batch", "for many inputs at once"),
    ("with_retry", "retrying on transient failures"),
    ("for_reports", "as used by the weekly reporting job"),
    ("daily", "scheduled once a day"),
    ("legacy", "kept for old callers"),
    ("fast", "trading accuracy for speed"),
    ("team_billing", "owned by the billing team"),
    ("team_search", "owned by the search team"),
    ("staging", "against the staging environment"),
    ("prod", "against production, with extra checks"),
    ("s3", "reading and writing objects in S3"),
    ("cached", "memoising results on disk"),
    ("verbose", "logging every step"),
    ("dry_run", "printing what it would do without doing it"),
]
# Suffixes, not openers like "please ...": the ranker drops openers before embedding,
# which would turn most "new" queries into repeated ones.
SUFFIXES = ["", " quickly", " for a report", " from a script", " again"]


def thousand_workflows() -> list[SearchDocument]:
    docs = [
        document(w, suffix=f"_{tag}", extra=f", {text}")
        for tag, text in QUALIFIERS
        for w in LIBRARY
    ]
    return docs[:1000]


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return (
        statistics.median(ordered),
        ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
    )


async def timed_ranks(
    ranker: object, queries: list[str], docs: list[SearchDocument]
) -> list[float]:
    samples = []
    for query in queries:
        started = time.perf_counter()
        await ranker.rank(query, docs, limit=5)  # type: ignore[attr-defined]
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def split_recall(embedder: Embedder) -> dict[str, tuple[float, float]]:
    """Combined-ranking recall@1/@3 on each split of the paraphrased queries.

    ``tuning`` and ``tuning_extra`` are what ranking choices were made on;
    ``held_out`` is the first split's other half, ``fresh`` the set written
    before any change was measured on it (see tests/search/eval_set.py).
    """
    library = library_documents()
    ranker = HybridRanker(embedder=embedder)
    splits = {
        "tuning": PARAPHRASED_TUNING,
        "tuning_extra": PARAPHRASED_TUNING_EXTRA,
        "held_out": PARAPHRASED_HELD_OUT,
        "fresh": PARAPHRASED_FRESH,
    }
    return {name: (await evaluate(ranker, library, qs))["all"] for name, qs in splits.items()}


async def bench(model: str, with_session: bool) -> None:
    embedder = Embedder(model)
    started = time.perf_counter()
    status = embedder.load(timeout=600)
    print(f"model: {status.requested} -> {status.state} ({status.model_id})")
    if status.state != "ready":
        print(f"  cannot benchmark semantic search: {status.reason}; {status.hint}")
        return
    print(f"  load: {time.perf_counter() - started:.2f} s (fastembed import included)")

    docs = thousand_workflows()
    queries = [q.query + s for s in SUFFIXES for q in all_labelled()]
    with tempfile.TemporaryDirectory() as tmp:
        storage = FileStorage(Path(tmp) / "store")
        await storage.open()
        try:
            ranker = HybridRanker(storage, embedder=embedder)
            started = time.perf_counter()
            embedded = await ranker.index(docs)
            cold = time.perf_counter() - started
            print(
                f"\ncold indexing of {len(docs)} workflows: {cold:.2f} s "
                f"({embedded} texts embedded, {cold / len(docs) * 1000:.2f} ms each), "
                "vectors written to the FileStorage cache"
            )
            restarted = HybridRanker(storage, embedder=embedder)
            started = time.perf_counter()
            again = await restarted.index(docs)
            print(
                f"new ranker warming from the storage cache: "
                f"{(time.perf_counter() - started) * 1000:.1f} ms ({again} texts embedded)"
            )

            await ranker.rank("warm up", docs, limit=5)
            fresh = await timed_ranks(ranker, queries, docs)
            repeated = await timed_ranks(ranker, queries, docs)
            lexical = await timed_ranks(LexicalRanker(), queries[:60], docs)
            fallback_ranker = HybridRanker(embedder=Embedder(Path(tmp) / "no-model"))
            await fallback_ranker.rank("warm up", docs, limit=5)
            fallback = await timed_ranks(fallback_ranker, queries, docs)
        finally:
            await storage.close()

    print(
        f"\nrank() over {len(docs)} workflows, warm cache, limit=5 "
        f"({len(queries)} queries)          p50 ms   p90 ms"
    )
    for label, samples in (
        ("hybrid, new query (query embedded)", fresh),
        ("hybrid, repeated query", repeated),
        ("hybrid ranker, lexical fallback (no model)", fallback),
        ("LexicalRanker (cached LexicalIndex)", lexical),
    ):
        p50, p90 = percentiles(samples)
        print(f"  {label:<52}{p50:>8.2f}{p90:>9.2f}")

    library = library_documents()
    labelled = all_labelled()
    results = {
        "lexical": await evaluate(LexicalRanker(), library, labelled),
        "semantic": await evaluate(
            HybridRanker(embedder=embedder, lexical_weight=0.0), library, labelled
        ),
        "combined": await evaluate(HybridRanker(embedder=embedder), library, labelled),
    }
    print(f"\nrecall on the labelled set ({len(library)} workflows, {len(labelled)} queries)")
    print(recall_table(results))
    print("\ncombined R@1/R@3 on the paraphrased splits")
    for name, (at_1, at_3) in (await split_recall(embedder)).items():
        print(f"  {name:<14}{at_1:.3f}/{at_3:.3f}")
    print("\ncombined recall by lexical weight (paraphrased R@1/R@3, identifier R@1, all R@1)")
    for weight in (0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0):  # all labelled: not for tuning
        r = await evaluate(
            HybridRanker(embedder=embedder, lexical_weight=weight), library, labelled
        )
        print(
            f"  {weight:<5} {r['paraphrased'][0]:.2f}/{r['paraphrased'][1]:.2f}"
            f"   {r['identifier'][0]:.2f}   {r['all'][0]:.2f}"
        )

    if with_session:
        await bench_session(model, docs, queries)


async def bench_session(model: str, docs: list[SearchDocument], queries: list[str]) -> None:
    import os

    os.environ["PY_CODE_MODE_EMBEDDING_MODEL"] = model
    with tempfile.TemporaryDirectory() as tmp:
        async with Session.inprocess(Path(tmp)) as session:
            started = time.perf_counter()
            for doc in docs:
                await session.add_workflow(doc.id, doc.fields["source"], doc.fields["description"])
            print(
                f"\nSession: stored {len(docs)} workflows in {time.perf_counter() - started:.1f} s"
            )
            started = time.perf_counter()
            await session.search_workflows("warm up")
            print(
                f"  first search (model ready check, cold index): "
                f"{time.perf_counter() - started:.2f} s"
            )
            samples = []
            for query in queries:
                started = time.perf_counter()
                await session.search_workflows(query)
                samples.append((time.perf_counter() - started) * 1000)
            p50, p90 = percentiles(samples)
            print(
                f"  search_workflows p50 {p50:.2f} ms, p90 {p90:.2f} ms "
                "(includes FileStorage.list_workflows)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = local_model_dir()
    parser.add_argument(
        "--model",
        default=str(default) if default else None,
        help="fastembed model name or local model directory",
    )
    parser.add_argument(
        "--session", action="store_true", help="also measure Session.search_workflows end to end"
    )
    args = parser.parse_args()
    if args.model is None:
        parser.error("no offline model found; pass --model")
    asyncio.run(bench(args.model, args.session))


if __name__ == "__main__":
    main()
