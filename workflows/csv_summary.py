"""Summarise a CSV stored as an artifact."""

import csv
import io


def run(artifact: str, max_examples: int = 3) -> dict:
    """Summarise a CSV artifact: row count, columns, and example values per column.

    The artifact may be saved as text or bytes (UTF-8).
    """
    data = artifacts.load(artifact)  # noqa: F821 - injected namespace
    text = data.decode("utf-8") if isinstance(data, bytes) else str(data)
    rows = list(csv.DictReader(io.StringIO(text)))
    columns = list(rows[0].keys()) if rows else []
    examples = {c: [r[c] for r in rows[:max_examples]] for c in columns}
    numeric = {}
    for column in columns:
        try:
            values = [float(r[column]) for r in rows if r[column] != ""]
        except ValueError:
            continue
        if values:
            numeric[column] = {"min": min(values), "max": max(values), "mean": sum(values) / len(values)}
    return {"rows": len(rows), "columns": columns, "examples": examples, "numeric": numeric}
