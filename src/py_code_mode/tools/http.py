"""HTTP tools: endpoints of a web API declared in YAML, called like Python functions.

A tool file::

    name: github
    type: http
    description: The GitHub REST API
    base_url: https://api.github.com          # ${VAR} is expanded from the host environment
    headers:
      Authorization: Bearer ${GITHUB_TOKEN}   # stays on the host; masked in error messages
    timeout: 30                               # seconds per call, connect to last byte
    endpoints:
      get_repo:                               # tools.github.get_repo(owner=..., repo=...)
        method: GET
        path: /repos/{owner}/{repo}           # placeholders are URL-encoded path parameters
        description: Get one repository
        parameters:
          owner: {type: string, description: Account or organisation}
          repo: {type: string}
      search_issues:
        path: /search/issues
        parameters:
          q: {type: string, required: true}
          per_page: {type: integer, default: 30, name: per-page}  # `name`: the wire name

``in`` says where a parameter goes: ``path`` (the default for a placeholder of
the path), ``query`` (the default for other parameters of GET, HEAD, DELETE and
OPTIONS), ``body`` (the default for POST, PUT and PATCH: the body parameters
form one JSON object) or ``header``.

Results: a JSON response becomes Python data, a textual one a ``str``, anything
else (images, archives) ``bytes``; an empty body is ``None``. A status of 400 or
more raises :class:`~py_code_mode.errors.ToolError` with the status and an
excerpt of the body.

The client (httpx2, the HTTP library the ``mcp`` SDK depends on) is created on
the first call and closed by :meth:`HttpTool.aclose`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Self
from urllib.parse import parse_qsl, quote, urlsplit

import httpx2
from pydantic import Field, field_validator, model_validator

from py_code_mode._private.names import is_keyword
from py_code_mode._private.tool_calls import (
    RESERVED_CALLABLES,
    reject_missing,
    reject_unknown,
    require_json,
    show,
)
from py_code_mode._version import __version__
from py_code_mode.errors import ConfigError, ToolError, ToolNotFoundError
from py_code_mode.tools._egress import (
    AddressPolicy,
    EgressRefusedError,
    IPNetwork,
    checked_transport,
    parse_networks,
)
from py_code_mode.tools._expand import Redactor, expand_headers, expand_value
from py_code_mode.tools.models import AddressList, EntryMap, Seconds, StrictModel, ToolFileConfig
from py_code_mode.tools.protocol import CallableSpec, ParameterSpec

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "HttpEndpoint",
    "HttpEndpointConfig",
    "HttpParameter",
    "HttpParameterConfig",
    "HttpTool",
    "HttpToolConfig",
    "HttpToolSpec",
    "load_http_tool",
]

logger = logging.getLogger(__name__)

ParamType = Literal["string", "integer", "number", "boolean", "array", "object"]
ParamLocation = Literal["path", "query", "body", "header", "json"]
"""``json``: the argument is the whole JSON request body (any JSON value)."""
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

DEFAULT_MAX_RESPONSE_BYTES: Final = 10 * 1024 * 1024
_EXCERPT_CHARS: Final = 1000
_STDERR_CHARS: Final = 20_000
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
_PLACEHOLDER: Final = re.compile(r"\{([^{}]*)\}")
_IDENTIFIER: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_HEADER_NAME: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_TEXT_TYPES: Final = ("text/", "application/xml", "application/javascript", "+xml")


# -- YAML models -------------------------------------------------------------------


class HttpParameterConfig(StrictModel):
    """``endpoints.<e>.parameters.<p>``: an argument of an endpoint."""

    type: ParamType = "string"
    in_: ParamLocation | None = Field(default=None, alias="in")
    required: bool = False
    default: Any = None
    description: str = ""
    name: str | None = Field(default=None, min_length=1)
    """The name on the wire (query key, header, JSON key) when it differs from the keyword."""


class HttpEndpointConfig(StrictModel):
    """``endpoints.<name>``: one callable of the tool."""

    method: str = "GET"
    path: str = "/"
    description: str = ""
    parameters: EntryMap[HttpParameterConfig] = Field(default_factory=dict)

    @field_validator("method")
    @classmethod
    def _check_method(cls, value: str) -> str:
        method = value.upper()
        if method not in Method.__args__:  # type: ignore[attr-defined]
            raise ValueError(
                f"unknown HTTP method {value!r}; use one of {', '.join(Method.__args__)}"  # type: ignore[attr-defined]
            )
        return method

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"path must start with '/', got {value!r}")
        if any(c.isspace() for c in value) or "#" in value or "?" in value:
            raise ValueError(
                f"path {value!r} must not contain spaces, '?' or '#'; declare query "
                "parameters under `parameters` with `in: query`"
            )
        return value


class HttpToolConfig(ToolFileConfig):
    """A ``type: http`` tool file."""

    type: Literal["http"]
    base_url: str = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Seconds = 30.0
    follow_redirects: bool = False
    max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, gt=0)
    allow_addresses: AddressList = Field(default_factory=list)
    endpoints: EntryMap[HttpEndpointConfig] = Field(min_length=1)

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not _HEADER_NAME.match(key):
                raise ValueError(f"{key!r} is not a valid HTTP header name")
            if "\r" in item or "\n" in item:
                raise ValueError(f"the value of header {key!r} contains a line break")
        return value

    @model_validator(mode="after")
    def _check_endpoints(self) -> Self:
        problems: list[str] = []
        for name, endpoint in self.endpoints.items():
            _resolve_endpoint(name, endpoint, problems)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def to_spec(
        self, *, source: Path | str | None = None, environ: Mapping[str, str]
    ) -> HttpToolSpec:
        """Expand ``${VAR}`` references and resolve the endpoints.

        Raises:
            ConfigError: A referenced variable is not set, or the expanded
                ``base_url`` is not an http(s) URL.
        """
        redactor = Redactor()
        base_url = expand_value(self.base_url, field="base_url", environ=environ, redactor=redactor)
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"base_url: expected an http:// or https:// URL with a host, got "
                f"{redactor.redact(base_url)!r}"
            )
        if parts.fragment:
            raise ConfigError("base_url: must not contain a '#fragment'")
        headers = expand_headers(self.headers, environ=environ, redactor=redactor)
        problems: list[str] = []
        endpoints = tuple(
            endpoint
            for name, config in self.endpoints.items()
            if (endpoint := _resolve_endpoint(name, config, problems)) is not None
        )
        return HttpToolSpec(
            name=self.name,
            description=self.description.strip(),
            base_url=base_url,
            display_url=self.base_url,
            headers=headers,
            timeout=self.timeout,
            follow_redirects=self.follow_redirects,
            max_response_bytes=self.max_response_bytes,
            allow_addresses=parse_networks(self.allow_addresses),
            endpoints=endpoints,
            redactor=redactor,
            source=str(source) if source is not None else None,
        )


# -- resolved specification --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpParameter:
    """A resolved endpoint parameter: where it goes and under which wire name."""

    name: str
    type: ParamType
    location: ParamLocation
    wire_name: str
    required: bool = False
    default: Any = None
    description: str = ""

    def to_parameter(self) -> ParameterSpec:
        """Describe the parameter for agents (``tools.list()``)."""
        where: str = self.location
        if self.wire_name != self.name:
            where = f"{self.location} {self.wire_name}"
        description = f"{self.description} ({where})" if self.description else f"({where})"
        return ParameterSpec(
            name=self.name,
            type=self.type,
            description=description,
            required=self.required,
            default=self.default,
        )


@dataclass(frozen=True, slots=True)
class HttpEndpoint:
    """A resolved endpoint: ``tools.<tool>.<name>(**parameters)``."""

    name: str
    method: str
    path: str
    description: str = ""
    parameters: tuple[HttpParameter, ...] = ()

    def to_callable(self) -> CallableSpec:
        """Describe the endpoint for agents, with its method and path."""
        route = f"{self.method} {self.path}"
        return CallableSpec(
            name=self.name,
            description=f"{self.description} [{route}]" if self.description else f"[{route}]",
            parameters=tuple(p.to_parameter() for p in self.parameters),
        )


@dataclass(frozen=True, slots=True)
class HttpToolSpec:
    """Everything an :class:`HttpTool` needs, validated and expanded.

    Attributes:
        base_url: The expanded base URL requests go to.
        display_url: The base URL as written in the file (``${VAR}`` unexpanded),
            used in messages so that no secret reaches agent code.
        headers: Expanded headers sent with every request.
        redactor: Masks expanded values in error text.
    """

    name: str
    base_url: str
    description: str = ""
    display_url: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 30.0
    follow_redirects: bool = False
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    allow_addresses: tuple[IPNetwork, ...] = ()
    """Non-public ranges requests may reach; every other address must be public."""
    endpoints: tuple[HttpEndpoint, ...] = ()
    redactor: Redactor = field(default_factory=Redactor)
    source: str | None = None


def _resolve_endpoint(
    name: str, config: HttpEndpointConfig, problems: list[str]
) -> HttpEndpoint | None:
    where = f"endpoints.{name}"
    count = len(problems)
    if not _IDENTIFIER.match(name) or is_keyword(name):
        problems.append(
            f"{where}: endpoint names are called as tools.<tool>.{name}(), so they must be "
            "Python identifiers starting with a letter (letters, digits, underscores)"
        )
    elif name in RESERVED_CALLABLES:
        problems.append(f"{where}: {name!r} is reserved (tools.<tool>.{name}() shows the tool)")
    placeholders: list[str] = []
    for match in _PLACEHOLDER.finditer(config.path):
        placeholder = match.group(1)
        if not placeholder.isidentifier():
            problems.append(f"{where}.path: placeholder {{{placeholder}}} must be a parameter name")
        elif placeholder in placeholders:
            problems.append(f"{where}.path: placeholder {{{placeholder}}} appears twice")
        placeholders.append(placeholder)
    rest = _PLACEHOLDER.sub("", config.path)
    if "{" in rest or "}" in rest:
        problems.append(f"{where}.path: unbalanced braces in {config.path!r}")
    default_location: ParamLocation = "body" if config.method in _BODY_METHODS else "query"
    parameters: list[HttpParameter] = []
    wire_names: dict[tuple[str, str], str] = {}
    for key, param in config.parameters.items():
        at = f"{where}.parameters.{key}"
        if not key.isidentifier() or is_keyword(key) or key.startswith("_"):
            problems.append(
                f"{at}: callers pass it as a keyword argument, so it must be a Python "
                "identifier; keep the wire name with `name:`"
            )
            continue
        location: ParamLocation = param.in_ or ("path" if key in placeholders else default_location)
        wire = param.name or key
        if location == "path":
            if key not in placeholders:
                problems.append(
                    f"{at}: `in: path` but the path {config.path!r} has no {{{key}}} placeholder"
                )
                continue
            if "required" in param.model_fields_set and not param.required:
                problems.append(f"{at}: a path parameter is always required")
                continue
            if param.name is not None:
                problems.append(f"{at}: `name` does not apply to a path parameter")
                continue
        elif key in placeholders:
            problems.append(f"{at}: the path has a {{{key}}} placeholder, so it must be `in: path`")
            continue
        if location == "json" and param.name is not None:
            problems.append(f"{at}: `name` does not apply to the whole JSON body (`in: json`)")
            continue
        if param.type == "object" and location not in ("body", "json"):
            problems.append(f"{at}: an object can only be sent `in: body` or `in: json`")
            continue
        if param.type == "array" and location in ("path", "header"):
            problems.append(f"{at}: an array cannot be sent `in: {location}`")
            continue
        if location == "header" and not _HEADER_NAME.match(wire):
            problems.append(f"{at}: {wire!r} is not a valid HTTP header name")
            continue
        wire_key = (location, wire.lower() if location == "header" else wire)
        if wire_key in wire_names:
            problems.append(
                f"{at}: sends the same {location} name {wire!r} as parameter "
                f"{wire_names[wire_key]!r}"
            )
            continue
        wire_names[wire_key] = key
        has_default = "default" in param.model_fields_set and param.default is not None
        if has_default and (why := _type_problem(param.type, param.default)) is not None:
            problems.append(f"{at}.default: {why}")
            continue
        if has_default and param.required:
            problems.append(f"{at}: `required: true` contradicts the default")
            continue
        parameters.append(
            HttpParameter(
                name=key,
                type=param.type,
                location=location,
                wire_name=wire,
                required=location == "path" or param.required,
                default=param.default if has_default else None,
                description=param.description.strip(),
            )
        )
    whole = [p.name for p in parameters if p.location == "json"]
    if whole and (len(whole) > 1 or any(p.location == "body" for p in parameters)):
        problems.append(
            f"{where}.parameters: {', '.join(whole)} `in: json` is the whole request body, so "
            "the endpoint can have no other body parameter"
        )
    declared = {p.name for p in parameters if p.location == "path"}
    for placeholder in placeholders:
        if placeholder not in config.parameters and placeholder not in declared:
            problems.append(
                f"{where}.path: placeholder {{{placeholder}}} has no parameter; declare it "
                f"under parameters (e.g. {placeholder}: {{type: string}})"
            )
    if len(problems) > count:
        return None
    return HttpEndpoint(
        name=name,
        method=config.method,
        path=config.path,
        description=config.description.strip(),
        parameters=tuple(parameters),
    )


def _type_problem(param_type: ParamType, value: Any) -> str | None:
    """Why ``value`` does not fit ``param_type``; None when it does."""
    ok: bool
    if param_type == "string":
        ok = isinstance(value, str)
        expected = "a string"
    elif param_type == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
        expected = "an integer"
    elif param_type == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        expected = "a finite number"
    elif param_type == "boolean":
        ok = isinstance(value, bool)
        expected = "a boolean (True or False)"
    elif param_type == "array":
        ok = isinstance(value, list | tuple)
        expected = "a list"
    else:
        ok = isinstance(value, dict)
        expected = "a dict"
    return None if ok else f"must be {expected}, got {show(value)}"


def _render_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _excerpt(text: str, limit: int = _EXCERPT_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " ..."


def _path_segment(value: Any) -> str:
    """``value`` encoded to stay one path segment: ``/``, ``?``, ``#`` and ``..`` included."""
    text = quote(_render_scalar(value), safe="")
    # Dot segments are unreserved, so quote() keeps them, and the URL would be
    # normalised to the parent path; encoded they stay a literal segment.
    return text.replace(".", "%2E") if text in (".", "..") else text


def _join(base_url: str, path: str) -> str:
    """``base_url`` (without its query string) with ``path`` appended to its path."""
    return base_url.partition("?")[0].rstrip("/") + path


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _is_text(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return (
        not media
        or "charset=" in content_type.lower()
        or any(media.startswith(t) or media.endswith(t) for t in _TEXT_TYPES)
        or media == "application/x-www-form-urlencoded"
    )


# -- the adapter -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Request:
    where: str
    method: str
    path: str
    display: str
    """Method and URL for messages: the base URL as written, so no secret shows."""
    query: list[tuple[str, str | int | float | bool | None]]
    body: Any
    """JSON body: a dict of the body parameters, or the value of an ``in: json`` one."""
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    reason: str
    content_type: str
    data: bytes


class HttpTool:
    """A web API exposed as a tool, one callable per endpoint (implements ``ToolAdapter``).

    Build one from a YAML mapping with :meth:`from_mapping` (or :func:`load_http_tool`).
    """

    def __init__(self, spec: HttpToolSpec) -> None:
        self.name = spec.name
        self.description = spec.description
        self.kind = "http"
        self.spec = spec
        self._endpoints = {endpoint.name: endpoint for endpoint in spec.endpoints}
        self._client: httpx2.AsyncClient | None = None
        self._closed = False

    @classmethod
    def from_mapping(
        cls,
        data: Mapping[str, Any],
        *,
        source: Path | str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> HttpTool:
        """Validate a parsed YAML mapping, expand ``${VAR}`` references and build the tool.

        Args:
            data: The YAML document.
            source: The file it came from, for messages.
            environ: Where ``${VAR}`` values come from; ``os.environ`` by default.

        Raises:
            pydantic.ValidationError: The mapping does not describe a valid HTTP tool.
            ConfigError: A referenced environment variable is not set.
        """
        config = HttpToolConfig.model_validate(data)
        spec = config.to_spec(source=source, environ=os.environ if environ is None else environ)
        return cls(spec)

    def __repr__(self) -> str:
        return f"HttpTool(name={self.name!r}, base_url={self.spec.display_url!r})"

    async def callables(self) -> list[CallableSpec]:
        """The endpoints, in declared order."""
        return [endpoint.to_callable() for endpoint in self.spec.endpoints]

    async def call(self, callable_name: str | None, args: Mapping[str, Any]) -> Any:
        """Send one request to an endpoint and return the decoded response.

        Returns:
            Parsed JSON for a JSON response, ``str`` for a textual one, ``bytes``
            otherwise, ``None`` for an empty body.

        Raises:
            ToolNotFoundError: No endpoint of that name.
            ToolError: Bad arguments, connection failure, timeout, an HTTP status of
                400 or more (the message has the status and a body excerpt), or a
                response larger than ``max_response_bytes``.
        """
        endpoint = self._endpoint(callable_name)
        where = f"tool '{self.name}' endpoint '{endpoint.name}'"
        if self._closed:
            raise ToolError(f"{where}: the tool was closed", tool=self.name)
        try:
            request = self._bind(where, endpoint, args)
        except UnicodeEncodeError as exc:  # found while quoting a path segment
            raise self._unsendable(where, exc) from None
        try:
            async with asyncio.timeout(self.spec.timeout):
                response = await self._send(request)
        except TimeoutError:
            raise ToolError(
                f"{where}: {request.display} timed out after {self.spec.timeout:g} s",
                tool=self.name,
            ) from None
        return self.spec.redactor.redact_data(self._decode(request, response))

    async def aclose(self) -> None:
        """Close the HTTP client. Idempotent."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -- internals ---------------------------------------------------------------

    def _unsendable(self, where: str, exc: UnicodeEncodeError) -> ToolError:
        """The error for an argument that no request can carry."""
        bad = self.spec.redactor.redact(repr(exc.object[exc.start : exc.end]))
        return ToolError(
            f"{where}: an argument holds {bad}, which cannot be sent ({exc.encoding}): "
            "lone surrogates never can, and header values must be ASCII",
            tool=self.name,
        )

    def _endpoint(self, callable_name: str | None) -> HttpEndpoint:
        names = ", ".join(self._endpoints) or "none"
        if callable_name is None:
            raise ToolError(
                f"tool '{self.name}' is an HTTP API: call one of its endpoints as "
                f"tools.{self.name}.<endpoint>(...); endpoints: {names}",
                tool=self.name,
            )
        endpoint = self._endpoints.get(callable_name)
        if endpoint is None:
            raise ToolNotFoundError(
                f"tool '{self.name}' has no endpoint {callable_name!r}; endpoints: {names}",
                tool=self.name,
            )
        return endpoint

    def _bind(self, where: str, endpoint: HttpEndpoint, args: Mapping[str, Any]) -> _Request:
        reject_unknown(where, args, [p.name for p in endpoint.parameters], tool=self.name)
        values: dict[str, Any] = {}
        missing: list[str] = []
        for param in endpoint.parameters:
            value = args.get(param.name)
            if value is None:
                value = param.default
            if value is None:
                if param.required:
                    missing.append(param.name)
                continue
            if (why := _type_problem(param.type, value)) is not None:
                raise ToolError(f"{where}: argument '{param.name}' {why}", tool=self.name)
            values[param.name] = value
        reject_missing(where, missing, tool=self.name)

        path = endpoint.path
        query: list[tuple[str, str | int | float | bool | None]] = []
        body: Any = None
        headers: dict[str, str] = {}
        for param in endpoint.parameters:
            if param.name not in values:
                continue
            value = values[param.name]
            if param.location == "path":
                path = path.replace(f"{{{param.name}}}", _path_segment(value))
            elif param.location == "query":
                items = value if param.type == "array" else [value]
                for item in items:
                    if isinstance(item, dict | list | tuple) or item is None:
                        raise ToolError(
                            f"{where}: argument '{param.name}' must hold strings, numbers or "
                            f"booleans to go in the query, got {show(item)}",
                            tool=self.name,
                        )
                    query.append((param.wire_name, _render_scalar(item)))
            elif param.location == "header":
                text = _render_scalar(value)
                if "\r" in text or "\n" in text:
                    raise ToolError(
                        f"{where}: argument '{param.name}' goes in a header and must not "
                        "contain line breaks",
                        tool=self.name,
                    )
                headers[param.wire_name] = text
            elif param.location == "json":
                body = value
            else:
                body = {} if body is None else body
                body[param.wire_name] = value
        if body is not None:
            require_json(where, body, "the body arguments", tool=self.name)
        return _Request(
            where=where,
            method=endpoint.method,
            path=path,
            display=f"{endpoint.method} {_join(self.spec.display_url, path)}",
            query=query,
            body=body,
            headers=headers,
        )

    def _client_for_loop(self) -> httpx2.AsyncClient:
        if self._client is None:
            self._client = httpx2.AsyncClient(
                headers={"User-Agent": f"py-code-mode/{__version__}", **self.spec.headers},
                timeout=httpx2.Timeout(self.spec.timeout),
                follow_redirects=self.spec.follow_redirects,
                transport=checked_transport(
                    AddressPolicy(self.spec.allow_addresses, tool=self.name)
                ),
            )
        return self._client

    async def _send(self, request: _Request) -> _Response:
        client = self._client_for_loop()
        url = _join(self.spec.base_url, request.path)
        # The client would replace a query string of the URL with `params`: merge them.
        base_query = parse_qsl(urlsplit(self.spec.base_url).query, keep_blank_values=True)
        query = [*base_query, *request.query]
        limit = self.spec.max_response_bytes
        try:
            async with client.stream(
                request.method,
                url,
                params=query or None,
                json=request.body,
                headers=request.headers or None,
            ) as response:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise ToolError(
                            f"{request.where}: the response is larger than {limit} bytes "
                            "(max_response_bytes in the tool file)",
                            tool=self.name,
                        )
                    chunks.append(chunk)
                return _Response(
                    status=response.status_code,
                    reason=response.reason_phrase,
                    content_type=response.headers.get("content-type", ""),
                    data=b"".join(chunks),
                )
        except EgressRefusedError as exc:
            raise ToolError(
                f"{request.where}: {self.spec.redactor.redact(str(exc))}", tool=self.name
            ) from None
        except httpx2.TimeoutException:
            raise TimeoutError from None
        except UnicodeEncodeError as exc:  # found while the client encodes the request
            raise self._unsendable(request.where, exc) from None
        except httpx2.HTTPError as exc:
            detail = self.spec.redactor.redact(str(exc)) or type(exc).__name__
            raise ToolError(
                f"{request.where}: {request.display} failed: {detail}", tool=self.name
            ) from None

    def _decode(self, request: _Request, response: _Response) -> Any:
        content_type, data = response.content_type, response.data
        textual = _is_text(content_type) or _is_json(content_type)
        text = data.decode("utf-8", errors="replace") if textual else ""
        if response.status >= 300:
            redact = self.spec.redactor.redact
            if not data:
                excerpt = "(empty body)"
            elif text:
                excerpt = redact(_excerpt(text))
            else:
                excerpt = f"({len(data)} bytes of {content_type})"
            hint = ""
            if response.status < 400:
                hint = " (a redirect; set follow_redirects: true in the tool file to follow it)"
            raise ToolError(
                f"{request.where}: {request.display} returned HTTP {response.status} "
                f"{response.reason}{hint}: {excerpt}",
                tool=self.name,
                stderr=redact(text[:_STDERR_CHARS]),
            )
        if not data:
            return None
        if _is_json(content_type):
            try:
                return json.loads(text)
            except ValueError:
                logger.debug("%s: response claims JSON but does not parse", request.where)
                return text
        if textual:
            return text
        return data


def load_http_tool(data: Mapping[str, Any], source: Path) -> HttpTool:
    """Loader registered for ``type: http`` in the tool registry.

    Raises:
        pydantic.ValidationError: The mapping does not describe a valid HTTP tool.
        ConfigError: A referenced environment variable is not set.
    """
    return HttpTool.from_mapping(data, source=source)
