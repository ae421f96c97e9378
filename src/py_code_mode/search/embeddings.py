"""Sentence embeddings through fastembed, loaded lazily and failing fast.

Semantic search is an optional extra (``pip install 'py-code-mode[search]'``), so
this module imports without fastembed or numpy: both are imported inside the
loader thread. Loading never happens on the event loop or on a request's path:
:meth:`Embedder.start_loading` hands it to a daemon thread, and callers either
wait for it with a bound (:meth:`Embedder.wait_ready`) or rank lexically in the
meantime.

Which model:

* the ``model`` argument, else the environment variable
  ``PY_CODE_MODE_EMBEDDING_MODEL``, else ``BAAI/bge-small-en-v1.5``;
* a fastembed model name, or a local directory holding an ONNX
  sentence-embedding model (``model.onnx`` or ``onnx/model.onnx``,
  ``tokenizer.json``, ``config.json``), registered with fastembed as a custom
  model. Its dimension comes from ``config.json`` (``hidden_size``); its pooling
  from a sentence-transformers ``1_Pooling/config.json`` or a ``pooling`` key in
  ``config.json`` (``mean``, ``cls`` or ``last_token``), mean by default;
* ``off`` (or ``none``, ``lexical``) disables semantic search on purpose.

Why loading fails fast: fastembed retries an unreachable Hugging Face for about
40 seconds before giving up. Here the model is first looked up in fastembed's
cache only; when it is not there, a short probe of the hub (``HF_ENDPOINT``)
decides whether a download can work at all. An unreachable hub, a missing extra
or a broken model directory ends in state ``failed`` with a reason and a hint,
logged once per process, and search ranks lexically.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import importlib
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from py_code_mode.errors import ConfigError, PyCodeModeError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_ENV_VAR",
    "Embedder",
    "EmbedderStatus",
    "EmbeddingUnavailableError",
    "embedding_status",
    "get_embedder",
    "resolve_model",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL: Final = "BAAI/bge-small-en-v1.5"
MODEL_ENV_VAR: Final = "PY_CODE_MODE_EMBEDDING_MODEL"
DISABLED_VALUES: Final = frozenset({"off", "none", "lexical", "disabled", "0", "false"})

_EXTRA_HINT: Final = "install the search extra: pip install 'py-code-mode[search]'"
_MODEL_HINT: Final = (
    f"set {MODEL_ENV_VAR} to a local directory holding an ONNX sentence-embedding model "
    "(model.onnx, tokenizer.json, config.json)"
)
_PROBE_TIMEOUT: Final = 3.0
_QUERY_CACHE_SIZE: Final = 512
_BATCH_SIZE: Final = 64
_HASH_CHUNK: Final = 1 << 20

State = Literal["idle", "loading", "ready", "failed", "disabled"]
Source = Literal["argument", "env", "default"]


class EmbeddingUnavailableError(PyCodeModeError):
    """No embedding model is loaded (still loading, failed, or disabled)."""


@dataclass(frozen=True)
class EmbedderStatus:
    """The embedding model's state and, when it is unusable, why and how to fix it.

    Attributes:
        requested: The model as configured: a fastembed name, a directory, or ``off``.
        source: Where ``requested`` came from: ``argument``, ``env`` or ``default``.
        state: ``idle`` (not asked for yet), ``loading``, ``ready``, ``failed`` or
            ``disabled``.
        model_id: Identity of the loaded model, used to key the embedding cache.
        dim: Length of the vectors.
        reason: Why the model is not available (``failed`` / ``disabled``).
        hint: How to fix it.
        load_seconds: How long loading took.
    """

    requested: str
    source: Source
    state: State
    model_id: str | None = None
    dim: int | None = None
    reason: str | None = None
    hint: str | None = None
    load_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return asdict(self)


def resolve_model(model: str | os.PathLike[str] | None = None) -> tuple[str, Source]:
    """The model to use and where that choice came from.

    Args:
        model: Explicit choice; the environment variable or the default when ``None``.

    Raises:
        ConfigError: ``model`` is not a string or path.
    """
    if model is not None:
        if isinstance(model, os.PathLike):
            return os.fspath(model), "argument"
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(
                f"embedding model must be a fastembed model name or a directory path, got {model!r}"
            )
        return model.strip(), "argument"
    env = os.environ.get(MODEL_ENV_VAR, "").strip()
    if env:
        return env, "env"
    return DEFAULT_MODEL, "default"


def _looks_like_path(spec: str) -> bool:
    return (
        spec.startswith(("/", "./", "../", "~", ".\\", "..\\")) or Path(spec).expanduser().is_dir()
    )


@dataclass(frozen=True)
class _Loaded:
    model: Any
    model_id: str
    dim: int
    words: frozenset[str] = frozenset()


class _LoadError(Exception):
    def __init__(self, reason: str, hint: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


class Embedder:
    """A fastembed text-embedding model that loads in the background.

    One instance per model is enough for a process: :func:`get_embedder` shares
    them. Vectors are float32 and L2-normalised, so a dot product is the cosine.

    Args:
        model: Fastembed model name or local model directory; see the module
            docstring for the default.
        cache_dir: Where fastembed keeps downloaded models (its own default, or
            ``FASTEMBED_CACHE_PATH``, when omitted).
        threads: onnxruntime threads; all cores when omitted.
        probe_timeout: Seconds to wait for the model hub before declaring it
            unreachable.

    Attributes:
        texts_embedded: How many texts were run through the model (documents and
            queries), which is how the cache is shown to work.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        threads: int | None = None,
        probe_timeout: float = _PROBE_TIMEOUT,
    ) -> None:
        self._requested, self._source = resolve_model(model)
        self._cache_dir = None if cache_dir is None else os.fspath(cache_dir)
        self._threads = threads
        self._probe_timeout = probe_timeout
        self._lock = threading.Lock()
        self._embed_lock = threading.Lock()
        self._future: concurrent.futures.Future[None] | None = None
        self._loaded: _Loaded | None = None
        self._status = EmbedderStatus(self._requested, self._source, "idle")
        self._started_at: float | None = None
        self._query_cache: OrderedDict[str, NDArray[np.float32]] = OrderedDict()
        self.texts_embedded = 0
        if self._requested.lower() in DISABLED_VALUES:
            self._status = EmbedderStatus(
                self._requested,
                self._source,
                "disabled",
                reason=f"semantic search is turned off ({MODEL_ENV_VAR}={self._requested})",
                hint=f"unset {MODEL_ENV_VAR} or set it to a model name or directory",
            )

    # -- state -----------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """True once the model is loaded and embeds."""
        return self._loaded is not None

    @property
    def finished(self) -> bool:
        """True when loading is over, successfully or not (or can never start)."""
        return self._status.state in ("ready", "failed", "disabled")

    @property
    def model_id(self) -> str:
        """Identity of the loaded model (the embedding cache's key).

        Raises:
            EmbeddingUnavailableError: The model is not loaded.
        """
        return self._require().model_id

    @property
    def dim(self) -> int:
        """Vector length of the loaded model.

        Raises:
            EmbeddingUnavailableError: The model is not loaded.
        """
        return self._require().dim

    @property
    def vocabulary(self) -> frozenset[str]:
        """Lowercase words the model's tokenizer knows whole; empty until loaded.

        A query word outside it is likely misspelt (see
        :meth:`~py_code_mode.search.lexical.LexicalIndex.corrections`).
        """
        loaded = self._loaded
        return loaded.words if loaded is not None else frozenset()

    @property
    def loading_since(self) -> float | None:
        """``time.monotonic()`` when loading started, or ``None`` before that."""
        return self._started_at

    def status(self) -> EmbedderStatus:
        """Current state, reason and hint; never loads anything."""
        return self._status

    # -- loading ---------------------------------------------------------------------
    def start_loading(self) -> None:
        """Begin loading in a background thread; returns at once. Idempotent."""
        with self._lock:
            if self._future is not None or self._status.state == "disabled":
                return
            self._future = concurrent.futures.Future()
            self._future.set_running_or_notify_cancel()
            self._started_at = time.monotonic()
            self._status = EmbedderStatus(self._requested, self._source, "loading")
        thread = threading.Thread(
            target=self._load_in_thread, name="py-code-mode-embedding-load", daemon=True
        )
        thread.start()

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """Start loading if needed and wait up to ``timeout`` seconds for it.

        Waiting does not block the event loop: other tasks keep running.

        Returns:
            True when the model is ready, False when it failed, is disabled or is
            still loading after ``timeout``.
        """
        self.start_loading()
        future = self._future
        if future is None:  # disabled
            return False
        if not future.done():
            if timeout is not None and timeout <= 0:
                return False
            await asyncio.wait([asyncio.wrap_future(future)], timeout=timeout)
        return self.ready

    def load(self, timeout: float | None = None) -> EmbedderStatus:
        """Blocking variant of :meth:`wait_ready` for scripts and ``doctor``.

        Never call it on an event loop's thread.
        """
        self.start_loading()
        if self._future is not None:
            with suppress(concurrent.futures.TimeoutError):
                self._future.result(timeout=timeout)
        return self._status

    def _load_in_thread(self) -> None:
        assert self._future is not None
        started = time.monotonic()
        try:
            loaded = self._load()
        except _LoadError as exc:
            self._fail(exc)
            self._future.set_result(None)
            return
        except Exception as exc:  # noqa: BLE001 - any loader failure means "fall back"
            self._fail(
                _LoadError(
                    f"loading {self._requested!r} failed: {type(exc).__name__}: {exc}",
                    _MODEL_HINT,
                )
            )
            self._future.set_result(None)
            return
        seconds = round(time.monotonic() - started, 3)
        self._loaded = loaded
        self._status = EmbedderStatus(
            self._requested,
            self._source,
            "ready",
            model_id=loaded.model_id,
            dim=loaded.dim,
            load_seconds=seconds,
        )
        logger.info("embedding model %s loaded in %.2f s", loaded.model_id, seconds)
        self._future.set_result(None)

    def _fail(self, exc: _LoadError) -> None:
        self._status = EmbedderStatus(
            self._requested, self._source, "failed", reason=exc.reason, hint=exc.hint
        )
        _warn_once(self._requested, exc.reason, exc.hint)

    def _load(self) -> _Loaded:
        try:
            importlib.import_module("numpy")
            fastembed = importlib.import_module("fastembed")
        except ImportError as exc:
            raise _LoadError(f"fastembed is not installed ({exc})", _EXTRA_HINT) from exc
        if _looks_like_path(self._requested):
            model, model_id, dim = self._load_directory(fastembed)
        else:
            model, model_id, dim = self._load_named(fastembed)
        loaded = _Loaded(model=model, model_id=model_id, dim=dim)
        probe = self._run_model(loaded, ["semantic search self-test"])
        if probe.shape != (1, dim):
            raise _LoadError(
                f"model {self._requested!r} returned vectors of shape {probe.shape}, "
                f"expected (1, {dim})",
                _MODEL_HINT,
            )
        return _Loaded(model=model, model_id=model_id, dim=dim, words=_whole_words(model))

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self._cache_dir is not None:
            options["cache_dir"] = self._cache_dir
        if self._threads is not None:
            options["threads"] = self._threads
        return options

    def _load_named(self, fastembed: Any) -> tuple[Any, str, int]:
        text_embedding = fastembed.TextEmbedding
        wanted = self._requested.lower()
        known = {str(m["model"]).lower(): m for m in text_embedding.list_supported_models()}
        description = known.get(wanted)
        if description is None:
            raise _LoadError(
                f"{self._requested!r} is neither a fastembed model nor an existing directory",
                "use a name from fastembed's TextEmbedding.list_supported_models() "
                f"(default {DEFAULT_MODEL}) or {_MODEL_HINT}",
            )
        name = str(description["model"])
        dim = int(description["dim"])
        with _quiet_fastembed():
            try:
                model = text_embedding(name, local_files_only=True, **self._options())
                return model, name, dim
            except Exception:  # noqa: BLE001, S110 - not cached; try downloading below
                pass
        offline = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "TRUE", "YES", "ON"}
        where = self._cache_dir or os.environ.get("FASTEMBED_CACHE_PATH") or "fastembed's cache"
        if offline:
            raise _LoadError(
                f"{name} is not in {where} and HF_HUB_OFFLINE forbids downloading it",
                f"download it once with network access, or {_MODEL_HINT}",
            )
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
        unreachable = _probe(endpoint, self._probe_timeout)
        if unreachable is not None:
            raise _LoadError(
                f"{name} is not in {where} and {endpoint} is unreachable ({unreachable})",
                f"download the model once on a machine with network access "
                f"(FASTEMBED_CACHE_PATH sets where it goes), or {_MODEL_HINT}",
            )
        logger.info("downloading embedding model %s from %s", name, endpoint)
        model = text_embedding(name, **self._options())
        return model, name, dim

    def _load_directory(self, fastembed: Any) -> tuple[Any, str, int]:
        directory = Path(self._requested).expanduser()
        if not directory.is_dir():
            raise _LoadError(f"model directory {directory} does not exist", _MODEL_HINT)
        model_file = next(
            (f for f in ("model.onnx", "onnx/model.onnx") if (directory / f).is_file()), None
        )
        if model_file is None:
            onnx_files = sorted(
                p.relative_to(directory).as_posix() for p in directory.glob("*.onnx")
            )
            if len(onnx_files) != 1:
                raise _LoadError(
                    f"no model.onnx (or single .onnx file) in {directory}", _MODEL_HINT
                )
            model_file = onnx_files[0]
        for required in ("tokenizer.json", "config.json"):
            if not (directory / required).is_file():
                raise _LoadError(f"{required} is missing from {directory}", _MODEL_HINT)
        try:
            config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise _LoadError(
                f"cannot read {directory / 'config.json'}: {exc}", _MODEL_HINT
            ) from exc
        if not isinstance(config, dict):
            raise _LoadError(f"{directory / 'config.json'} is not a JSON object", _MODEL_HINT)
        dim = next(
            (config[k] for k in ("embedding_dim", "dim", "hidden_size", "d_model") if k in config),
            None,
        )
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise _LoadError(
                f"{directory / 'config.json'} gives no embedding size (hidden_size)", _MODEL_HINT
            )
        pooling_name = _pooling_of(directory, config)
        common = importlib.import_module("fastembed.common.model_description")
        try:
            pooling = common.PoolingType[pooling_name]
        except KeyError:
            raise _LoadError(
                f"unknown pooling {pooling_name!r} in {directory}; use mean, cls or last_token",
                _MODEL_HINT,
            ) from None
        fingerprint = _fingerprint(directory, model_file, pooling_name)
        model_id = f"local/{directory.name}@{fingerprint[:16]}"
        name = f"py-code-mode-local/{directory.name}-{fingerprint[:16]}"
        external = [p.name for p in (directory / model_file).parent.glob("*.onnx_data")]
        registered = {
            str(m["model"]).lower() for m in fastembed.TextEmbedding.list_supported_models()
        }
        if name.lower() not in registered:
            fastembed.TextEmbedding.add_custom_model(
                model=name,
                pooling=pooling,
                normalization=True,
                sources=common.ModelSource(hf=name),
                dim=dim,
                model_file=model_file,
                additional_files=external,
            )
        model = fastembed.TextEmbedding(
            model_name=name, specific_model_path=str(directory), **self._options()
        )
        return model, model_id, dim

    def _require(self) -> _Loaded:
        loaded = self._loaded
        if loaded is None:
            status = self._status
            detail = status.reason or f"the model is {status.state}"
            raise EmbeddingUnavailableError(f"embedding model {self._requested!r}: {detail}")
        return loaded

    # -- embedding -------------------------------------------------------------------
    def embed_sync(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Vectors of ``texts`` as rows (blocking; use :meth:`embed` on a loop).

        Raises:
            EmbeddingUnavailableError: The model is not loaded.
        """
        loaded = self._require()
        if isinstance(texts, str):
            raise ConfigError("embed() takes a sequence of strings, not a single string")
        return self._run_model(loaded, list(texts))

    async def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Vectors of ``texts`` as rows, computed in a worker thread."""
        self._require()
        return await asyncio.to_thread(self.embed_sync, texts)

    async def embed_query(self, text: str) -> NDArray[np.float32]:
        """Vector of one query; recent queries are answered from memory."""
        cached = self._query_cache.get(text)
        if cached is not None:
            self._query_cache.move_to_end(text)
            return cached
        vector: NDArray[np.float32] = (await self.embed([text]))[0]
        self._query_cache[text] = vector
        if len(self._query_cache) > _QUERY_CACHE_SIZE:
            self._query_cache.popitem(last=False)
        return vector

    def _run_model(self, loaded: _Loaded, texts: list[str]) -> NDArray[np.float32]:
        import numpy as np  # numpy comes with the optional [search] extra

        if not texts:
            return np.zeros((0, loaded.dim), dtype=np.float32)
        with self._embed_lock:
            rows = list(loaded.model.embed(texts, batch_size=_BATCH_SIZE))
            self.texts_embedded += len(texts)
        matrix = np.asarray(rows, dtype=np.float32).reshape(len(texts), -1)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        result: NDArray[np.float32] = matrix / norms
        return result

    def __repr__(self) -> str:
        return f"<Embedder {self._requested!r} {self._status.state}>"


def _whole_words(model: Any) -> frozenset[str]:
    """Whole-word entries of a fastembed model's tokenizer vocabulary, or none.

    fastembed has no public accessor for it, so this reads its tokenizer
    (a ``tokenizers.Tokenizer``) defensively: a model without one only loses
    typo correction against the model's vocabulary.
    """
    try:
        vocab = model.model.tokenizer.get_vocab()
    except Exception:  # optional: an unknown layout means no vocabulary
        logger.debug("no tokenizer vocabulary for typo correction", exc_info=True)
        return frozenset()
    if not isinstance(vocab, dict):
        return frozenset()
    return frozenset(
        w for w in vocab if isinstance(w, str) and len(w) >= 3 and w.isascii() and w.isalpha()
    )


def _pooling_of(directory: Path, config: dict[str, Any]) -> str:
    st_pooling = directory / "1_Pooling" / "config.json"
    if st_pooling.is_file():
        try:
            data = json.loads(st_pooling.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if isinstance(data, dict):
            if data.get("pooling_mode_cls_token"):
                return "CLS"
            if data.get("pooling_mode_lasttoken"):
                return "LAST_TOKEN"
            if data.get("pooling_mode_mean_tokens"):
                return "MEAN"
    pooling = config.get("pooling")
    if isinstance(pooling, str) and pooling.strip():
        return pooling.strip().upper()
    return "MEAN"


def _fingerprint(directory: Path, model_file: str, pooling: str) -> str:
    """Content hash of what decides the vectors: weights, tokenizer, config, pooling."""
    digest = hashlib.sha256(pooling.encode())
    for name in (model_file, "tokenizer.json", "config.json"):
        digest.update(name.encode() + b"\0")
        with (directory / name).open("rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _probe(endpoint: str, timeout: float) -> str | None:
    """``None`` when ``endpoint`` answers HTTP at all, else why it did not."""
    request = urllib.request.Request(endpoint, method="HEAD")  # noqa: S310 - http(s) endpoint
    try:
        with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310
            return None
    except urllib.error.HTTPError:
        return None  # an HTTP error status still means the server is there
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return (
            f"{type(reason).__name__}: {reason}" if isinstance(reason, Exception) else str(reason)
        )


@contextmanager
def _quiet_fastembed() -> Iterator[None]:
    """Silence fastembed's own error lines while probing its cache.

    A miss there is expected, and reported once by this module with a fix;
    fastembed would otherwise log it through loguru as an error.
    """
    try:
        loguru = importlib.import_module("loguru")
    except ImportError:
        yield
        return
    loguru.logger.disable("fastembed")
    try:
        yield
    finally:
        loguru.logger.enable("fastembed")


_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(requested: str, reason: str, hint: str) -> None:
    with _warned_lock:
        if requested in _warned:
            return
        _warned.add(requested)
    logger.warning("semantic search unavailable, ranking lexically: %s. To fix: %s.", reason, hint)


_shared: dict[str, Embedder] = {}
_shared_lock = threading.Lock()


def get_embedder(model: str | os.PathLike[str] | None = None) -> Embedder:
    """The process-wide embedder for ``model`` (resolved as in :func:`resolve_model`).

    Sessions share it, so a process loads each model once and reports a failure
    once.
    """
    requested, _ = resolve_model(model)
    with _shared_lock:
        embedder = _shared.get(requested)
        if embedder is None:
            embedder = Embedder(model)
            _shared[requested] = embedder
        return embedder


def embedding_status(model: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Status of the shared embedder for ``model``, as plain data, without loading it."""
    return get_embedder(model).status().to_dict()
