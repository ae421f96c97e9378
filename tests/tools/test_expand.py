"""``${VAR}`` expansion of tool settings, and the header checks built on it."""

from __future__ import annotations

import pytest

from py_code_mode.errors import ConfigError
from py_code_mode.tools._expand import Redactor, expand_headers


def test_headers_are_expanded_and_their_secrets_remembered() -> None:
    redactor = Redactor()
    headers = expand_headers(
        {"Authorization": "Bearer ${TOKEN}", "Accept": "application/json"},
        environ={"TOKEN": "tok-123456"},
        redactor=redactor,
    )
    assert headers == {"Authorization": "Bearer tok-123456", "Accept": "application/json"}
    assert redactor.redact("denied: Bearer tok-123456") == "denied: Bearer ${TOKEN}"


def test_a_line_break_written_in_a_header_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"headers\.X: the value contains a line break"):
        expand_headers({"X": "a\r\nInjected: yes"}, environ={})


def test_a_line_break_that_comes_from_a_variable_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"headers\.X: the expanded value contains a line break"):
        expand_headers({"X": "${V}"}, environ={"V": "a\nInjected: yes"})


def test_an_unset_variable_in_a_header_names_the_header() -> None:
    with pytest.raises(ConfigError, match=r"headers\.X: environment variable 'NOPE' is not set"):
        expand_headers({"X": "${NOPE}"}, environ={})


def test_redact_data_masks_values_in_results_of_any_shape() -> None:
    redactor = Redactor()
    redactor.remember("tok-123456", "${TOKEN}")
    result = redactor.redact_data(
        {"auth": "Bearer tok-123456", "tok-123456": [b"x tok-123456", ("tok-123456",)], "n": 3}
    )
    assert result == {
        "auth": "Bearer ${TOKEN}",
        "${TOKEN}": [b"x ${TOKEN}", ("${TOKEN}",)],
        "n": 3,
    }
