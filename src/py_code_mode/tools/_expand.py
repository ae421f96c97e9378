"""``${VAR}`` expansion of tool settings from the host environment, with redaction.

MCP and HTTP tool files reference credentials as ``${API_TOKEN}`` instead of
spelling them out. Expansion happens once, when the file is loaded on the host;
the expanded values stay in the adapter and never reach agent code. Every
expanded value is remembered by a :class:`Redactor` so that error messages,
which do reach agent code, can have them masked back to ``${API_TOKEN}``.

Syntax: ``${NAME}`` where ``NAME`` is a shell-style variable name. ``$${`` is a
literal ``${``. A lone ``$`` or ``$NAME`` without braces is left as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from py_code_mode.errors import ConfigError

__all__ = ["MIN_REDACTED_LENGTH", "Redactor", "expand_headers", "expand_value"]

_REFERENCE: Final = re.compile(r"\$\$\{|\$\{([^}]*)\}?")
_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

MIN_REDACTED_LENGTH: Final = 4
"""Shorter expanded values are not masked: replacing every ``1`` or ``on`` in a
message would garble it, and so short a value is no secret anyway."""


class Redactor:
    """Remembers expanded values and masks them in text shown to agents."""

    def __init__(self) -> None:
        self._secrets: dict[str, str] = {}

    def remember(self, value: str, reference: str) -> None:
        """Record that ``value`` came from ``reference`` (e.g. ``${API_TOKEN}``)."""
        if len(value) >= MIN_REDACTED_LENGTH:
            self._secrets.setdefault(value, reference)

    def redact(self, text: str) -> str:
        """``text`` with every remembered value replaced by its ``${NAME}`` reference."""
        # Longest first, so a value containing another one is masked as a whole.
        for value in sorted(self._secrets, key=len, reverse=True):
            if value in text:
                text = text.replace(value, self._secrets[value])
        return text

    def redact_data(self, value: Any) -> Any:
        """``value`` (a tool's result) with remembered values masked in every string.

        A server that echoes a credential back (a debug endpoint, an error body)
        must not hand it to agent code, so results are masked like messages are.
        Strings, bytes, dict keys and values, list items are all covered.
        """
        if not self._secrets:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, bytes | bytearray):
            data = bytes(value)
            for secret in sorted(self._secrets, key=len, reverse=True):
                data = data.replace(secret.encode(), self._secrets[secret].encode())
            return data
        if isinstance(value, dict):
            return {self.redact_data(k): self.redact_data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.redact_data(item) for item in value)
        return value


def expand_value(
    text: str,
    *,
    field: str,
    environ: Mapping[str, str],
    redactor: Redactor | None = None,
) -> str:
    """Expand every ``${NAME}`` in ``text`` from ``environ``.

    Args:
        text: The setting as written in the YAML file.
        field: Its path in the file (``headers.Authorization``), for messages.
        environ: Where values come from (the host's ``os.environ``).
        redactor: Records the expanded values for later masking.

    Raises:
        ConfigError: A referenced variable is not set, or a reference is
            malformed; the message names the field and the variable.
    """
    if "$" not in text:
        return text
    parts: list[str] = []
    position = 0
    for match in _REFERENCE.finditer(text):
        parts.append(text[position : match.start()])
        position = match.end()
        token = match.group(0)
        if token == "$${":  # noqa: S105 - the escape for a literal "${", not a password
            parts.append("${")
            continue
        name = match.group(1)
        if not token.endswith("}") or name is None or not _NAME.match(name):
            raise ConfigError(
                f"{field}: malformed variable reference {token!r}; write ${{NAME}} with a "
                "name of letters, digits and underscores (and $${ for a literal ${)"
            )
        value = environ.get(name)
        if value is None:
            raise ConfigError(
                f"{field}: environment variable {name!r} is not set (referenced as "
                f"${{{name}}}); set it in the environment of the host process that loads "
                "the tools"
            )
        if redactor is not None:
            redactor.remember(value, f"${{{name}}}")
        parts.append(value)
    parts.append(text[position:])
    return "".join(parts)


def expand_headers(
    headers: Mapping[str, str],
    *,
    environ: Mapping[str, str],
    redactor: Redactor | None = None,
) -> dict[str, str]:
    """Expand every header value, then refuse any that would split the header line.

    A line break in a header value would let it smuggle in further headers, so it
    is refused whether it was written in the file or came from a variable.

    Raises:
        ConfigError: A referenced variable is not set or malformed, or a value
            holds a line break; the message names the header.
    """
    expanded = {
        key: expand_value(value, field=f"headers.{key}", environ=environ, redactor=redactor)
        for key, value in headers.items()
    }
    for key, value in expanded.items():
        if "\r" in value or "\n" in value:
            written = "\r" in headers[key] or "\n" in headers[key]
            which = "value" if written else "expanded value"
            raise ConfigError(f"headers.{key}: the {which} contains a line break")
    return expanded
