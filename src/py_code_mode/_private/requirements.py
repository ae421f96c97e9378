"""Validation of package requirement specs for ``deps``.

Specs reach a package installer, so only plain PEP 508 requirements from an index
are accepted: no options (``--index-url``), no URLs or paths, no shell syntax.
"""

from __future__ import annotations

import os
import re

from py_code_mode.errors import DependencyError

__all__ = [
    "canonical_name",
    "dependency_name",
    "read_requirements_file",
    "validate_requirement",
]

_MAX_SPEC_LEN = 200
_FORBIDDEN = re.compile(r"[;&|`$(){}\\\n\r\t'\"]|://| @ |^@|@ ")
_CANONICAL = re.compile(r"[-_.]+")


def canonical_name(name: str) -> str:
    """PEP 503 normalised distribution name (``Foo_Bar`` -> ``foo-bar``)."""
    return _CANONICAL.sub("-", name).lower()


def validate_requirement(spec: object) -> str:
    """Return the normalised spec if it is a safe PEP 508 requirement, else raise.

    Raises:
        DependencyError: Not a string, an installer option, a URL or path, shell
            syntax, environment markers, or not parseable as PEP 508.
    """
    # packaging.requirements costs ~40 ms, and this module loads with `import py_code_mode`
    from packaging.requirements import InvalidRequirement, Requirement

    if not isinstance(spec, str) or not spec.strip():
        raise DependencyError(f"package spec must be a non-empty string, got {spec!r}")
    text = spec.strip()
    if len(text) > _MAX_SPEC_LEN:
        raise DependencyError(f"package spec is longer than {_MAX_SPEC_LEN} characters")
    if text.startswith("-"):
        raise DependencyError(
            f"package spec {text!r} looks like an installer option; only requirements "
            "such as 'pandas' or 'pandas>=2,<3' are accepted"
        )
    if "/" in text or _FORBIDDEN.search(text):
        raise DependencyError(
            f"package spec {text!r} contains a URL, path, marker or shell character; "
            "give a name with an optional version, e.g. 'requests>=2.31'"
        )
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise DependencyError(f"package spec {text!r} is not a valid requirement: {exc}") from exc
    if req.url or req.marker:
        raise DependencyError(f"package spec {text!r} must not carry a URL or marker")
    return str(req)


def dependency_name(spec: str) -> str:
    """Canonical distribution name of a spec (or of a bare name)."""
    # packaging.requirements costs ~40 ms, and this module loads with `import py_code_mode`
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return canonical_name(Requirement(spec).name)
    except InvalidRequirement as exc:
        raise DependencyError(f"{spec!r} is not a valid package name or requirement") from exc


def read_requirements_file(path: str | os.PathLike[str]) -> list[str]:
    """Validated specs of a requirements file (comments and blank lines skipped).

    Raises:
        DependencyError: The file cannot be read or holds an unacceptable line.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise DependencyError(f"cannot read requirements file {os.fspath(path)!r}: {exc}") from exc
    specs = []
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            specs.append(validate_requirement(line))
        except DependencyError as exc:
            raise DependencyError(f"{os.fspath(path)}, line {number}: {exc}") from None
    return specs
