"""Recognise images among run values, without importing an imaging library.

PNG and JPEG bytes are recognised by their magic numbers; a PIL image or a
matplotlib figure by duck typing on objects whose class comes from those
packages, so nothing is imported that the agent's code did not import itself.
"""

from __future__ import annotations

import io
import time
from typing import Any

__all__ = ["IMAGE_ARTIFACT_PREFIX", "image_artifact_name", "image_bytes"]

IMAGE_ARTIFACT_PREFIX = "images/"

_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpg"))


def _module_of(value: Any) -> str:
    return str(getattr(type(value), "__module__", "") or "")


def image_bytes(value: Any) -> tuple[bytes, str] | None:
    """``(data, extension)`` when ``value`` is an image, else ``None``."""
    if isinstance(value, bytes | bytearray):
        for magic, ext in _MAGIC:
            if value.startswith(magic):
                return bytes(value), ext
        return None
    module = _module_of(value)
    try:
        if module.startswith("PIL.") and callable(getattr(value, "save", None)):
            out = io.BytesIO()
            value.save(out, format="PNG")
            return out.getvalue(), "png"
        if module.startswith("matplotlib.") and callable(getattr(value, "savefig", None)):
            out = io.BytesIO()
            value.savefig(out, format="png", bbox_inches="tight")
            return out.getvalue(), "png"
    except Exception:  # noqa: BLE001 - an image that cannot be rendered is shown as repr
        return None
    return None


def image_artifact_name(ext: str) -> str:
    """A fresh artifact name for a shown image."""
    # Imported here: secrets loads hashlib and OpenSSL (12 M instructions, 5% of the
    # worker's start) for a name only a shown image needs.
    import secrets

    return f"{IMAGE_ARTIFACT_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}.{ext}"
