"""``network="allowlist"``: the sandbox reaches the network only through the egress proxy.

A sandbox with this setting has no network of its own (a jail's private ``lo``, a
container with ``network_mode="none"``). The host runs an
:class:`~py_code_mode.tools._egress_proxy.EgressProxy` on its own thread and event
loop (so it serves whatever loop, or none, the session runs on) listening on a unix
socket in a private host directory; that socket file alone is bound into the sandbox
at :data:`SOCKET_IN_SANDBOX`. The worker starts a forwarder on the sandbox's own
loopback (:mod:`py_code_mode.worker.egress`) and points ``HTTP_PROXY``/
``HTTPS_PROXY`` at it, so pip, uv, urllib, httpx and curl go through the proxy. Code
that ignores the variables can still reach only the socket: there is no route out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

from py_code_mode._private.scratch import make_scratch
from py_code_mode.result import ExecutionResult
from py_code_mode.tools._egress import AddressPolicy, parse_networks
from py_code_mode.tools._egress_proxy import EgressProxy, HostRules, parse_host_patterns

__all__ = [
    "PROXY_VARS",
    "SOCKET_ENV",
    "SOCKET_IN_SANDBOX",
    "URL_FILE_ENV",
    "SandboxEgress",
    "check_egress_settings",
    "with_refusals",
]

SOCKET_ENV: Final = "PY_CODE_MODE_EGRESS_SOCKET"
"""The worker's variable naming the proxy socket; the worker's forwarder reads it."""
URL_FILE_ENV: Final = "PY_CODE_MODE_EGRESS_URL_FILE"
"""Where the worker writes its forwarder's URL (for installers that don't inherit its env)."""
SOCKET_IN_SANDBOX: Final = "/run/py-code-mode-egress.sock"
"""Where a container sees the proxy socket (a jail sees it at its host path)."""
PROXY_VARS: Final = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
_REFUSALS_KEPT: Final = 64
_START_TIMEOUT: Final = 10.0


def check_egress_settings(
    owner: str,
    network: str,
    *,
    allow: Sequence[str],
    deny: Sequence[str],
    hosts: Mapping[str, str],
    allow_addresses: Sequence[str],
) -> None:
    """Validate the egress fields of an executor config.

    Raises:
        ValueError: A pattern or address is malformed, ``allowlist`` has nothing to
            allow, or egress fields are given without ``network="allowlist"``.
    """
    if network != "allowlist":
        given = [
            name
            for name, value in (
                ("allow", allow),
                ("deny", deny),
                ("hosts", hosts),
                ("allow_addresses", allow_addresses),
            )
            if value
        ]
        if given:
            raise ValueError(
                f"{', '.join(given)} only apply to network='allowlist'; set "
                f"{owner}(network='allowlist', allow=[...]) or drop them"
            )
        return
    if not allow:
        raise ValueError(
            "network='allowlist' needs the hosts to allow, e.g. allow=['pypi.org', "
            "'files.pythonhosted.org', '*.example.com']; use network='none' for no network"
        )
    parse_host_patterns(allow, field="allow")
    parse_host_patterns(deny, field="deny")
    parse_networks(allow_addresses)
    parse_networks(hosts.values(), field="hosts")


def with_refusals(result: ExecutionResult, refusals: Sequence[str]) -> ExecutionResult:
    """``result`` with one stderr line per refused connection, so the agent sees why."""
    if not refusals:
        return result
    lines = "".join(f"[py-code-mode] {text}\n" for text in refusals)
    stderr = result.stderr
    if stderr and not stderr.endswith("\n"):
        stderr += "\n"
    return dataclasses.replace(result, stderr=stderr + lines)


class EgressSettings(Protocol):
    """The egress fields both isolated executors' configs carry."""

    @property
    def allow(self) -> Sequence[str]: ...
    @property
    def deny(self) -> Sequence[str]: ...
    @property
    def hosts(self) -> Mapping[str, str]: ...
    @property
    def allow_addresses(self) -> Sequence[str]: ...


class SandboxEgress:
    """One session's egress proxy, on its own thread, listening on a private unix socket.

    Args:
        allow: Host patterns that may be reached.
        deny: Host patterns that may not (wins over ``allow``).
        hosts: Names answered without DNS.
        allow_addresses: Private ranges that may be reached.
    """

    def __init__(
        self,
        *,
        allow: Sequence[str],
        deny: Sequence[str] = (),
        hosts: Mapping[str, str] | None = None,
        allow_addresses: Sequence[str] = (),
    ) -> None:
        self._policy = AddressPolicy(parse_networks(allow_addresses), hosts=hosts)
        self._rules = HostRules(parse_host_patterns(allow), parse_host_patterns(deny, field="deny"))
        self._refusals: collections.deque[str] = collections.deque(maxlen=_REFUSALS_KEPT)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._proxy: EgressProxy | None = None
        self._dir: Path | None = None
        self.url = ""
        """``http://127.0.0.1:<port>`` on the host, for installers that run there."""

    @classmethod
    def of(cls, config: EgressSettings) -> SandboxEgress:
        """The proxy an executor config with ``network="allowlist"`` asks for."""
        return cls(
            allow=config.allow,
            deny=config.deny,
            hosts=config.hosts,
            allow_addresses=config.allow_addresses,
        )

    @property
    def socket_path(self) -> Path:
        """The unix socket the sandbox gets (valid once started)."""
        assert self._dir is not None
        return self._dir / "egress.sock"

    def start(self) -> None:
        """Start the thread and listen (blocking, well under a second)."""
        self._dir = make_scratch("egress")  # mode 0700; named after this pid for the sweep
        ready: Any = collections.deque(maxlen=1)
        started = threading.Event()
        loop = asyncio.new_event_loop()
        self._loop = loop

        async def listen() -> None:
            proxy = EgressProxy(self._policy, self._rules, on_refusal=self._refusals.append)
            self._proxy = proxy
            await proxy.listen_unix(str(self.socket_path))
            # Any sandbox uid may connect; the directory (0700) keeps other host users out.
            os.chmod(self.socket_path, 0o666)  # noqa: S103
            self.url = await proxy.url()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(listen())
            except BaseException as exc:  # noqa: BLE001 - re-raised by start()
                ready.append(exc)
                with contextlib.suppress(Exception):  # free the loop's fds and listener
                    loop.run_until_complete(proxy_close())
                loop.close()
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(proxy_close())
            loop.close()

        async def proxy_close() -> None:
            if self._proxy is not None:
                await self._proxy.aclose()

        self._thread = threading.Thread(target=run, name="py-code-mode-egress", daemon=True)
        self._thread.start()
        if not started.wait(_START_TIMEOUT):
            raise TimeoutError("the egress proxy did not start")
        if ready:
            raise ready[0]

    def take_refusals(self) -> list[str]:
        """The refusals since the last call (for the run's stderr)."""
        taken: list[str] = []
        with contextlib.suppress(IndexError):
            while True:
                taken.append(self._refusals.popleft())
        return taken

    def close(self) -> None:
        """Stop the proxy and remove its socket (blocking). Idempotent."""
        loop, self._loop = self._loop, None
        if loop is not None and self._thread is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
            self._thread.join(_START_TIMEOUT)
        if self._dir is not None:
            with contextlib.suppress(OSError):
                self.socket_path.unlink()
            with contextlib.suppress(OSError):
                self._dir.rmdir()
