"""One error tree, one translation table, one payload format across the boundary."""

from __future__ import annotations

import pytest
import redis.exceptions

import py_code_mode
from py_code_mode import errors
from py_code_mode.errors import (
    ExecutorError,
    HostError,
    StorageError,
    ToolError,
    error_payload,
    translate,
)
from py_code_mode.worker import errors as worker_errors


def test_the_host_module_re_exports_the_worker_tree_unchanged() -> None:
    for name in errors.__all__:
        assert getattr(errors, name) is getattr(worker_errors, name)
        assert getattr(py_code_mode, name) is getattr(errors, name)


@pytest.mark.parametrize("name", sorted(worker_errors.ERROR_TYPES))
def test_every_class_survives_the_trip_through_a_payload(name: str) -> None:
    cls = worker_errors.ERROR_TYPES[name]
    tool = issubclass(cls, ToolError)
    original = cls("it failed", tool="curl", stderr="boom") if tool else cls("it failed")
    rebuilt = worker_errors.error_from_payload(error_payload(original))
    assert type(rebuilt) is cls
    assert str(rebuilt) == "it failed"
    if isinstance(rebuilt, ToolError):
        assert (rebuilt.tool, rebuilt.stderr) == ("curl", "boom")


def test_third_party_errors_are_translated_by_the_table() -> None:
    assert isinstance(translate(redis.exceptions.ConnectionError("down"), "reading"), StorageError)
    assert isinstance(translate(OSError("disk full"), "writing"), StorageError)
    assert isinstance(translate(TimeoutError(), "waiting"), HostError)
    assert isinstance(translate(ZeroDivisionError(), "adding"), HostError)
    own = ExecutorError("no worker")
    assert translate(own, "starting") is own


def test_a_payload_of_a_foreign_error_hides_host_details(caplog: pytest.LogCaptureFixture) -> None:
    payload = error_payload(PermissionError("/home/me/.secret is not readable"))
    assert payload["type"] == "StorageError"
    assert ".secret" not in payload["message"]
    assert "PermissionError" in payload["message"]
    assert ".secret" in caplog.text  # the host's log keeps the details
