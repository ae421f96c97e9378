r"""Make any text that leaves the host encodable as UTF-8.

Agent code can produce strings that hold lone surrogates (``'a\udcffb'``, or bytes
decoded with ``surrogateescape``). Python keeps them happily, but every UTF-8
encoder refuses them: the JSON of an MCP response, a terminal, a log line. So
results are passed through :func:`safe_data` where they leave the host, and a
lone surrogate is shown as its escape (``\udcff``) instead of breaking the
transport.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["safe_data", "safe_text"]

_MAX_DEPTH: Final = 200


def safe_text(text: str) -> str:
    r"""``text`` with every lone surrogate replaced by its ``\uXXXX`` escape."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def safe_data(value: Any, _depth: int = 0) -> Any:
    """``value`` with :func:`safe_text` applied to every string in it, keys included.

    Containers are rebuilt only when something in them changed, so clean data (the
    usual case) comes back as the very same object.
    """
    if isinstance(value, str):
        return safe_text(value)
    if _depth > _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        items = [(safe_data(k, _depth + 1), safe_data(v, _depth + 1)) for k, v in value.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items(), strict=True)):
            return value
        return dict(items)
    if isinstance(value, list | tuple):
        cleaned = [safe_data(item, _depth + 1) for item in value]
        if all(a is b for a, b in zip(cleaned, value, strict=True)):
            return value
        return type(value)(cleaned) if isinstance(value, list) else tuple(cleaned)
    return value
