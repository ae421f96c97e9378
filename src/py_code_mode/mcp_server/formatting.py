"""How results look to a model: short readable text plus structured data.

Every tool answers with one text block (what a model reads) and structured content
matching the tool's output schema (what a program reads). Large fields are cut
in the middle with a marker, so a runaway ``print`` cannot flood the client.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from py_code_mode.result import ExecutionResult

__all__ = [
    "DEFAULT_MAX_CHARS",
    "RUN_OUTPUT_MAX_CHARS",
    "STRUCTURED_FIELD_MAX",
    "ArtifactListOutput",
    "ArtifactOutput",
    "DeletedOutput",
    "DepChangeOutput",
    "DepsOutput",
    "ResetOutput",
    "RunCodeOutput",
    "SearchOutput",
    "ToolListOutput",
    "WorkflowListOutput",
    "WorkflowOutput",
    "artifact_payload",
    "format_artifacts",
    "format_deps",
    "format_run_result",
    "format_tools",
    "format_workflow",
    "format_workflows",
    "truncate",
    "workflow_line",
]

DEFAULT_MAX_CHARS = 20_000
"""Characters kept per field (value, stdout, error, artifact data) in a result."""


class _Open(BaseModel):
    """Output models accept extra keys, so richer records still validate."""

    model_config = ConfigDict(extra="allow")


class RunCodeOutput(_Open):
    """Structured result of ``run_code``."""

    is_ok: bool
    value: Any = None
    stdout: str | None = ""
    stderr: str | None = ""
    error: str | None = None
    error_type: str | None = None
    execution_time_ms: float = 0.0
    variables_lost: bool = False
    truncated: bool = False
    output_artifact: str | None = None
    images: list[str] = []


class ToolListOutput(_Open):
    """Tools with their callables (``list_tools``)."""

    tools: list[dict[str, Any]]
    problems: list[dict[str, str]] = []
    """Tool files that failed to load: ``{path, message}``."""


class WorkflowListOutput(_Open):
    """Workflows without source (``list_workflows``)."""

    workflows: list[dict[str, Any]]
    problems: list[dict[str, str]] = []
    """Workflow files that were skipped: ``{name, message}``."""


class SearchOutput(_Open):
    """Ranked hits, best first, each with ``score`` and ``why``."""

    query: str
    results: list[dict[str, Any]]


class WorkflowOutput(_Open):
    """One workflow; ``source`` is present for ``get_workflow``."""

    name: str
    description: str = ""
    parameters: list[dict[str, Any]] = []
    source: str | None = None


class DeletedOutput(_Open):
    """Outcome of a delete."""

    name: str
    deleted: bool


class ArtifactListOutput(_Open):
    """Index entries of stored artifacts."""

    artifacts: list[dict[str, Any]]


class ArtifactOutput(_Open):
    """An artifact's data: text as-is, JSON as data, bytes as base64."""

    name: str
    kind: str
    encoding: str
    data: Any = None
    truncated: bool = False


class DepsOutput(_Open):
    """Persisted requirement specs."""

    deps: list[str]


class DepChangeOutput(_Open):
    """Outcome of ``add_dep`` / ``remove_dep``."""

    spec: str
    changed: bool
    output: str = ""


class ResetOutput(_Open):
    """Outcome of ``reset_session``."""

    reset: bool


def truncate(text: str, limit: int = DEFAULT_MAX_CHARS) -> tuple[str, bool]:
    """Cut ``text`` to about ``limit`` characters, keeping its start and its end.

    The end of output usually holds the answer or the exception, so both ends are
    kept and the marker says how much was dropped.
    """
    if len(text) <= limit:
        return text, False
    head = limit * 2 // 3
    tail = limit - head
    dropped = len(text) - head - tail
    return f"{text[:head]}\n... [truncated {dropped} characters] ...\n{text[-tail:]}", True


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=repr)


def render_value(value: Any) -> str:
    """Text form of a result value: strings as they are, other data as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return _json(value)


STRUCTURED_FIELD_MAX = 4_000
"""Longer fields go only in the text block, so a reply never carries them twice."""

RUN_OUTPUT_MAX_CHARS = 16_000
"""Characters of stdout shown in a ``run_code`` reply; the whole output is saved aside."""


def _once(text: str | None, cut: bool) -> str | None:
    """A field for structured content: itself when short and whole, else ``None``.

    A long or cut field is shown once, in the text block.
    """
    if text is None or (not cut and len(text) <= STRUCTURED_FIELD_MAX):
        return text
    return None


def format_run_result(
    result: ExecutionResult,
    limit: int = DEFAULT_MAX_CHARS,
    *,
    output_artifact: str | None = None,
    stdout_limit: int | None = None,
) -> tuple[str, RunCodeOutput]:
    """Text and structured form of a run, every field bounded by ``limit``.

    A field too long for structured content is shown once, cut, in the text block;
    structured content then carries ``None`` for it and ``truncated`` is set.

    Args:
        result: The run.
        limit: Characters kept of the value and the error.
        output_artifact: Name of the artifact holding the whole stdout, when it was
            too long to show and was saved.
        stdout_limit: Characters of stdout (and of stderr) shown; ``limit`` by default.
    """
    out_limit = limit if stdout_limit is None else stdout_limit
    parts: list[str] = []
    any_cut = False
    value_out: Any = result.value
    if result.value is not None:
        rendered = render_value(result.value)
        shown, cut = truncate(rendered, limit)
        any_cut |= cut
        if cut or len(rendered) > STRUCTURED_FIELD_MAX:
            value_out = None
            any_cut = True
        parts.append(f"value:\n{shown}")
    stdout, stdout_cut = truncate(result.stdout or "", out_limit)
    any_cut |= stdout_cut
    if stdout:
        parts.append(f"stdout:\n{stdout.rstrip(chr(10))}")
    stderr_text = result.stderr or ""
    stderr, stderr_cut = truncate(stderr_text, out_limit)
    any_cut |= stderr_cut
    if stderr:
        parts.append(f"stderr:\n{stderr.rstrip(chr(10))}")
    if output_artifact is not None:
        parts.append(
            f"full output saved as artifact {output_artifact!r}: read it with "
            f"artifacts.load({output_artifact!r}) in run_code or as resource "
            f"artifact://{output_artifact}"
        )
    error: str | None = None
    error_cut = False
    if result.error is not None:
        error, error_cut = truncate(result.error, limit)
        any_cut |= error_cut
        parts.append(f"error ({result.error_type or 'Error'}):\n{error.rstrip(chr(10))}")
    if result.variables_lost:
        parts.append(
            "note: the session's variables were lost (the worker was restarted); "
            "re-run any setup code you need."
        )
    if not parts:
        parts.append("ok (no value, no output)")
    parts.append(f"[{'ok' if result.is_ok else 'failed'} in {result.execution_time_ms:.0f} ms]")
    stdout_out = _once(stdout, stdout_cut)
    stderr_out = _once(stderr, stderr_cut)
    error_out = _once(error, error_cut)
    any_cut |= stdout_out is None or stderr_out is None or (error is not None and error_out is None)
    structured = RunCodeOutput(
        is_ok=result.is_ok,
        value=value_out,
        stdout=stdout_out,
        stderr=stderr_out,
        error=error_out,
        error_type=result.error_type,
        execution_time_ms=result.execution_time_ms,
        variables_lost=result.variables_lost,
        truncated=any_cut,
        output_artifact=output_artifact,
    )
    return "\n\n".join(parts), structured


def _signature(parameters: Iterable[Mapping[str, Any]]) -> str:
    shown: list[str] = []
    for p in parameters:
        name = str(p.get("name", "?"))
        kind = p.get("kind")
        if kind == "var_positional":
            name = f"*{name}"
        elif kind == "var_keyword":
            name = f"**{name}"
        typ = p.get("type")
        text = f"{name}: {typ}" if typ and typ != "Any" else name
        if not p.get("required", True) and kind not in ("var_positional", "var_keyword"):
            text += f" = {p.get('default')!r}"
        shown.append(text)
    return ", ".join(shown)


def _first_line(text: Any) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0] if lines else ""


def _score(entry: Mapping[str, Any]) -> str:
    return f" [score {entry['score']}]" if "score" in entry else ""


def format_workflows(workflows: list[dict[str, Any]], *, query: str | None = None) -> str:
    """One line per workflow: call signature and description."""
    if not workflows:
        if query is not None:
            return (
                f"No workflow matches {query!r}. Write the code with run_code, then save it "
                "with workflows.create(name, source, description) so it can be reused."
            )
        return "No workflows yet. Save working code with workflows.create(name, source, ...)."
    head = (
        f"{len(workflows)} workflow(s) for {query!r}, best first"
        if query is not None
        else f"{len(workflows)} workflow(s)"
    )
    lines = [f"{head}; call them in run_code as workflows.<name>(...):"]
    lines.extend(f"- {workflow_line(w)}{_score(w)}" for w in workflows)
    return "\n".join(lines)


def workflow_line(workflow: Mapping[str, Any]) -> str:
    """``name(params) - description`` of a workflow."""
    sig = _signature(workflow.get("parameters") or [])
    desc = _first_line(workflow.get("description"))
    return f"{workflow.get('name')}({sig}){' - ' + desc if desc else ''}"


def format_workflow(workflow: Mapping[str, Any], limit: int = DEFAULT_MAX_CHARS) -> str:
    """A workflow with its source."""
    text = [f"workflow {workflow_line(workflow)}"]
    if workflow.get("source") is not None:
        source, _ = truncate(str(workflow["source"]), limit)
        text.append(f"source:\n{source.rstrip(chr(10))}")
    return "\n\n".join(text)


def _callable_line(tool: str, entry: Mapping[str, Any]) -> str:
    params = entry.get("parameters") or {}
    shown = []
    if isinstance(params, Mapping):
        for pname, spec in params.items():
            typ = spec.get("type") if isinstance(spec, Mapping) else None
            optional = isinstance(spec, Mapping) and not spec.get("required", False)
            shown.append(f"{pname}{': ' + str(typ) if typ else ''}{'?' if optional else ''}")
    name = entry.get("name")
    target = f"tools.{tool}.{name}" if name else f"tools.{tool}"
    desc = _first_line(entry.get("description"))
    return f"    {target}({', '.join(shown)}){' - ' + desc if desc else ''}"


def format_tools(tools: list[dict[str, Any]], *, query: str | None = None) -> str:
    """Tools and their callables, one line each."""
    if not tools:
        if query is not None:
            return f"No tool matches {query!r}."
        return "No tools are configured (tool YAML files go in the tools directory)."
    head = (
        f"{len(tools)} tool(s) for {query!r}, best first"
        if query is not None
        else f"{len(tools)} tool(s)"
    )
    lines = [f"{head}; call them in run_code:"]
    for t in tools:
        desc = _first_line(t.get("description"))
        lines.append(f"- {t.get('name')}{': ' + desc if desc else ''}{_score(t)}")
        if t.get("unsafe"):
            lines.append(f"    UNSAFE: {t['unsafe']}")
        lines.extend(_callable_line(str(t.get("name")), c) for c in t.get("callables") or [])
    return "\n".join(lines)


def format_artifacts(artifacts: list[dict[str, Any]]) -> str:
    """One line per artifact: name, kind, size, description."""
    if not artifacts:
        return "No artifacts. Save data in run_code with artifacts.save(name, data)."
    lines = [f"{len(artifacts)} artifact(s); read one with load_artifact or artifacts.load():"]
    for a in artifacts:
        desc = _first_line(a.get("description"))
        lines.append(
            f"- {a.get('name')} ({a.get('kind')}, {a.get('size', 0)} bytes)"
            f"{' - ' + desc if desc else ''}"
        )
    return "\n".join(lines)


def artifact_payload(
    name: str, data: Any, limit: int = DEFAULT_MAX_CHARS
) -> tuple[str, ArtifactOutput]:
    """Text and structured form of an artifact's data."""
    if isinstance(data, bytes):
        encoded = base64.b64encode(data).decode("ascii")
        shown, cut = truncate(encoded, limit)
        text = f"artifact {name} (bytes, {len(data)} bytes, base64):\n{shown}"
        return text, ArtifactOutput(
            name=name, kind="bytes", encoding="base64", data=shown, truncated=cut
        )
    if isinstance(data, str):
        shown, cut = truncate(data, limit)
        return f"artifact {name} (str):\n{shown}", ArtifactOutput(
            name=name, kind="str", encoding="text", data=shown, truncated=cut
        )
    rendered = _json(data)
    shown, cut = truncate(rendered, limit)
    return f"artifact {name} (json):\n{shown}", ArtifactOutput(
        name=name, kind="json", encoding="json", data=shown if cut else data, truncated=cut
    )


def format_deps(deps: list[str], *, allow_runtime_deps: bool) -> str:
    """The deps list, with how to change it."""
    how = (
        "add more with add_dep or deps.add()"
        if allow_runtime_deps
        else "this server does not allow installing packages at runtime"
    )
    if not deps:
        return f"No packages listed; {how}."
    return f"{len(deps)} package(s) ({how}):\n" + "\n".join(f"- {d}" for d in deps)
