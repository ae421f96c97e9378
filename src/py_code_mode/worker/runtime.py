"""Executes agent code with REPL semantics against the four namespaces."""

from __future__ import annotations

import ast
import builtins
import contextvars
import inspect
import linecache
import math
import os
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import CodeType
from typing import TYPE_CHECKING, Any

from .capture import (
    OutputBuffer,
    active_buffer,
    active_error_buffer,
    install_routers,
    run_threads,
)
from .channel import HostChannel
from .errors import ERROR_TYPES, RunInterrupted
from .images import image_artifact_name, image_bytes
from .namespaces import build_namespaces

if TYPE_CHECKING:
    # asyncio is imported where it is used: it is half of the worker's import time
    # (about 137 M instructions of 271 M), and most runs never need an event loop.
    import asyncio

__all__ = ["DEFAULT_OUTPUT_LIMIT", "RunOutcome", "WorkerRuntime", "to_result_value"]

DEFAULT_OUTPUT_LIMIT = 1_000_000
"""Characters of output kept per run before truncation."""

_MAX_REPR = 100_000
_MAX_JSON_DEPTH = 64
_CODE_CACHE_SIZE = 256
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_CELL_PREFIX = "<cell-"
_WORKFLOW_PREFIX = "<workflow "


@dataclass(slots=True)
class RunOutcome:
    """What one run produced, before the executor adds timing and fault handling."""

    value: Any = None
    stdout: str = ""
    error: str | None = None
    error_type: str | None = None
    stderr: str = ""
    images: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for the wire; ``stderr`` and ``images`` only when there are some.

        Not :func:`dataclasses.asdict`: its deep copy of the value is wasted on data
        that is encoded right away (a tenth of a trivial run's time in the worker).
        """
        data: dict[str, Any] = {
            "value": self.value,
            "stdout": self.stdout,
            "error": self.error,
            "error_type": self.error_type,
        }
        if self.stderr:
            data["stderr"] = self.stderr
        if self.images:
            data["images"] = list(self.images)
        return data


@dataclass(slots=True)
class _Compiled:
    filename: str
    body: CodeType | None
    expr: CodeType | None


class WorkerRuntime:
    """A persistent Python namespace that runs agent code.

    ``run`` blocks the calling thread; executors decide which thread that is and how
    to interrupt it (an async exception in-process, ``SIGINT`` in a child process).
    Variables, imports, functions and classes persist between runs until ``reset``.

    Args:
        host: Channel to the host's capabilities.
        output_limit: Characters of output kept per run.
        extra_internal_dirs: Directories whose frames are hidden from tracebacks shown
            to the agent (the host library when running in-process).
        before_collect: Called at the end of each run, before its output is read, so
            a worker process can move output written at the file-descriptor level
            (``os.write(1, ...)``, child processes) into :attr:`current_output`.
        output_buffer: Makes each run's buffer from the output limit; a worker
            process passes a buffer that first takes in pending fd-level output, so
            prints and child-process output keep their order.
    """

    def __init__(
        self,
        host: HostChannel,
        *,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        extra_internal_dirs: tuple[str, ...] = (),
        before_collect: Callable[[], None] | None = None,
        output_buffer: Callable[[int], OutputBuffer] = OutputBuffer,
    ) -> None:
        self._host = host
        self.output_limit = output_limit
        self._before_collect = before_collect
        self._output_buffer = output_buffer
        self.current_output: OutputBuffer | None = None
        """The active run's output buffer, for output arriving outside ``sys.stdout``."""
        self._internal_dirs = (_PACKAGE_DIR, *extra_internal_dirs)
        self._code_cache: OrderedDict[str, _Compiled] = OrderedDict()
        self._cell_counter = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.shown_images: list[str] = []
        """Artifact names of images shown by the active run."""
        self.namespaces = build_namespaces(host, self)
        self.globals: dict[str, Any] = self._fresh_globals()

    # -- public API ------------------------------------------------------------------
    def run(self, code: str) -> RunOutcome:
        """Run ``code`` in the persistent namespace; never raises for agent errors."""
        install_routers()
        buffer = self._output_buffer(self.output_limit)
        errors = OutputBuffer(self.output_limit)
        token = active_buffer.set(buffer)
        error_token = active_error_buffer.set(errors)
        self.current_output = buffer
        outcome = RunOutcome()
        self.shown_images.clear()
        late = run_threads.begin(buffer, errors)
        if late:
            buffer.write(late)
        try:
            try:
                compiled = self._compile(code)
            except SyntaxError as exc:
                outcome.error = "".join(traceback.format_exception_only(type(exc), exc))
                outcome.error_type = type(exc).__name__
            else:
                outcome.value = self._result_value(self._execute(compiled))
        except (RunInterrupted, KeyboardInterrupt) as exc:
            self._discard_loop()
            outcome.error = self.format_exception(exc)
            outcome.error_type = type(exc).__name__
        except BaseException as exc:  # noqa: BLE001 - agent errors are data, SystemExit too
            outcome.error = self.format_exception(exc)
            outcome.error_type = type(exc).__name__
        finally:
            run_threads.end()
            active_error_buffer.reset(error_token)
            active_buffer.reset(token)
        if self._before_collect is not None:
            self._before_collect()
        self.current_output = None
        outcome.stdout = buffer.getvalue()
        outcome.stderr = errors.getvalue()
        outcome.images = list(self.shown_images)
        return outcome

    def show_image(self, value: Any, name: str | None = None) -> str:
        """Save an image as an artifact and show it in this run's reply; its name.

        Raises:
            TypeError: ``value`` is not PNG/JPEG bytes, a PIL image or a matplotlib figure.
        """
        found = image_bytes(value)
        if found is None:
            raise TypeError(
                "show() takes PNG or JPEG bytes, a PIL image or a matplotlib figure, "
                f"not {type(value).__name__}"
            )
        data, ext = found
        name = name or image_artifact_name(ext)
        self.namespaces["artifacts"].save(name, data, description="image shown by a run")
        self.shown_images.append(name)
        return name

    def _result_value(self, value: Any) -> Any:
        """The run's value; an image is saved, shown, and described instead."""
        if value is None or isinstance(value, bool | int | float | str | list | dict):
            return to_result_value(value)
        found = image_bytes(value)
        if found is None:
            return to_result_value(value)
        try:
            name = self.show_image(value)
        except Exception as exc:  # noqa: BLE001 - fall back to the repr, and say why
            return to_result_value(value) + f"  (not shown as an image: {exc})"
        return f"<image: {len(found[0])} bytes, saved as artifact {name!r}>"

    def reset(self) -> None:
        """Forget every name defined by agent code; keep the namespaces."""
        self._discard_loop()
        self.namespaces = build_namespaces(self._host, self)
        self.globals = self._fresh_globals()

    def close(self) -> None:
        """Release the event loop used for top-level ``await``."""
        self._discard_loop()

    def detach_loop(self) -> None:
        """Forget the event loop without closing it: a stuck run may still be using it."""
        self._loop = None

    def run_coroutine(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine to completion from synchronous code and return its result.

        Used for top-level ``await`` and ``async def run`` workflows. Inside an event
        loop already running in this thread (a workflow invoked from async agent
        code) it runs on a helper thread with its own loop, so the sync call never
        deadlocks.
        """
        import asyncio

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._ensure_loop().run_until_complete(coro)
        return _run_in_thread(coro)

    def compile_workflow(self, name: str, source: str) -> dict[str, Any]:
        """Execute workflow source into a fresh module namespace and return it."""
        filename = f"{_WORKFLOW_PREFIX}{name}>"
        _register_source(filename, source)
        code = compile(source, filename, "exec", dont_inherit=True)
        module_globals = self._fresh_globals(module_name=f"workflow_{name}")
        exec(code, module_globals)  # noqa: S102 - workflow code runs inside the sandboxed worker
        return module_globals

    def format_exception(self, exc: BaseException) -> str:
        """Traceback text limited to the agent's own frames (and libraries it called)."""
        te = traceback.TracebackException.from_exception(exc, capture_locals=False)
        self._trim(te, seen=set())
        return "".join(te.format())

    # -- internals ---------------------------------------------------------------------
    def _fresh_globals(self, module_name: str = "__main__") -> dict[str, Any]:
        # The library's error classes are predefined, so agent code can write
        # ``except WorkflowNotFoundError`` in every executor without an import.
        return {
            "__name__": module_name,
            "__builtins__": builtins,
            **ERROR_TYPES,
            **self.namespaces,
        }

    def _compile(self, code: str) -> _Compiled:
        cached = self._code_cache.get(code)
        if cached is not None:
            self._code_cache.move_to_end(code)
            return cached
        self._cell_counter += 1
        filename = f"{_CELL_PREFIX}{self._cell_counter}>"
        _register_source(filename, code)
        tree = ast.parse(code, filename=filename, mode="exec")
        flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        expr: CodeType | None = None
        last = tree.body[-1] if tree.body else None
        if isinstance(last, ast.Expr):
            tree.body.pop()
            expr_tree = ast.Expression(body=last.value)
            expr = compile(expr_tree, filename, "eval", flags=flags, dont_inherit=True)
        body = (
            compile(tree, filename, "exec", flags=flags, dont_inherit=True) if tree.body else None
        )
        compiled = _Compiled(filename, body, expr)
        self._code_cache[code] = compiled
        if len(self._code_cache) > _CODE_CACHE_SIZE:
            self._code_cache.popitem(last=False)
        return compiled

    def _execute(self, compiled: _Compiled) -> Any:
        if compiled.body is not None:
            self._eval(compiled.body)
        if compiled.expr is not None:
            return self._eval(compiled.expr)
        return None

    def _eval(self, code: CodeType) -> Any:
        result = eval(code, self.globals)  # noqa: S307 - agent code runs in the worker by design
        if code.co_flags & inspect.CO_COROUTINE:
            return self.run_coroutine(result)
        return result

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._loop.is_closed():
            import asyncio

            self._loop = asyncio.new_event_loop()
        return self._loop

    def _discard_loop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None or loop.is_running():
            return
        import asyncio  # a loop exists, so asyncio is loaded already

        try:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.close()
        except Exception:  # noqa: BLE001, S110 - best effort on an interrupted loop
            pass

    def _is_internal(self, filename: str) -> bool:
        return filename.startswith(self._internal_dirs)

    def _trim(self, te: traceback.TracebackException, seen: set[int]) -> None:
        if id(te) in seen:
            return
        seen.add(id(te))
        frames = list(te.stack)
        first_agent = next(
            (
                i
                for i, f in enumerate(frames)
                if f.filename.startswith((_CELL_PREFIX, _WORKFLOW_PREFIX))
            ),
            None,
        )
        if first_agent is not None:
            frames = frames[first_agent:]
        frames = [f for f in frames if not self._is_internal(f.filename)]
        te.stack = traceback.StackSummary.from_list(frames)
        for chained in (te.__cause__, te.__context__):
            if chained is not None:
                self._trim(chained, seen)
        for group_member in getattr(te, "exceptions", None) or ():
            self._trim(group_member, seen)


def _register_source(filename: str, source: str) -> None:
    """Make ``source`` visible to ``traceback`` and ``inspect`` under ``filename``."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)


def _run_in_thread(coro: Coroutine[Any, Any, Any]) -> Any:
    import asyncio

    ctx = contextvars.copy_context()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = ctx.run(asyncio.run, coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="py-code-mode-nested-loop", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.05)  # short joins keep the caller interruptible
    if "error" in box:
        raise box["error"]
    return box.get("value")


def to_result_value(value: Any) -> Any:
    """JSON data as-is; anything else as its (bounded) ``repr``."""
    if _is_json(value, 0):
        return value
    try:
        text = repr(value)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__ must not fail the run
        text = f"<unrepresentable {type(value).__name__}: {exc!r}>"
    if len(text) > _MAX_REPR:
        text = text[:_MAX_REPR] + f"... [repr truncated, {len(text)} characters]"
    return text


def _is_json(value: Any, depth: int) -> bool:
    if depth > _MAX_JSON_DEPTH:
        return False
    if value is None or isinstance(value, bool | int | str):
        return type(value) in (type(None), bool, int, str)
    if type(value) is float:
        return math.isfinite(value)
    if type(value) is list:
        return all(_is_json(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _is_json(v, depth + 1) for k, v in value.items())
    return False
