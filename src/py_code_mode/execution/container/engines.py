"""Docker engines by URL: clients, health, and which engine a new session uses.

``ContainerConfig.engine`` names one engine or several (``tcp://host:2376`` with
TLS client certificates from ``engine_cert_path``, ``ssh://user@host``,
``unix:///path``). With several, each session start asks every engine that is not
marked down for its number of running containers (``GET /info``, which is also
the health check) and takes the least loaded one. An engine that does not answer
is skipped and asked again after ``engine_retry`` seconds. Before a worker is
restarted (after a timeout kill or a death) its engine is checked again, so a
session whose engine died moves to another one.

Nothing here assumes an engine shares this machine's filesystem or loopback: the
worker arrives over the container's attach stream (relayed from TLS/SSH by
:mod:`._stream_bridge`), and containers are tracked by id with their engine.

Everything here blocks: call it from a thread.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from py_code_mode.errors import ConfigError, ExecutorError

if TYPE_CHECKING:
    import docker

    from py_code_mode.execution.container.config import ContainerConfig
    from py_code_mode.execution.container.spec import Spec

__all__ = [
    "SCHEMES",
    "check_engines",
    "client",
    "engine_urls",
    "engines",
    "ensure_live",
    "prepare",
    "prepare_every_engine",
]

logger = logging.getLogger(__name__)

SCHEMES = ("tcp://", "ssh://", "unix://")
_API_TIMEOUT = 120
_INFO_TTL = 1.0
_CERT_FILES = ("ca.pem", "cert.pem", "key.pem")


def engine_urls(config: ContainerConfig) -> list[str]:
    """The configured engine URLs, in order (empty: the environment's engine)."""
    engine = config.engine
    if engine is None:
        return []
    return [engine] if isinstance(engine, str) else list(engine)


def check_engines(config: ContainerConfig) -> None:
    """Validate the engine settings of ``config`` without contacting anything.

    Raises:
        ConfigError: A URL is malformed, a ``tcp://`` engine lacks TLS certificates,
            or a setting needs the engine to share this machine's loopback.
    """
    owner = "ContainerConfig"
    engine = config.engine
    if engine is not None and not isinstance(engine, str | tuple | list):
        raise ConfigError(f"{owner}.engine must be a URL or a list of URLs, got {engine!r}")
    urls = engine_urls(config)
    if engine is not None and not urls:
        raise ConfigError(f"{owner}.engine is an empty list; give at least one engine URL")
    if len(set(urls)) != len(urls):
        raise ConfigError(f"{owner}.engine lists an engine twice: {urls}")
    for url in urls:
        if not isinstance(url, str) or not url.startswith(SCHEMES) or any(c.isspace() for c in url):
            raise ConfigError(
                f"{owner}.engine {url!r} is not an engine URL; use tcp://host:2376 (TLS), "
                "ssh://user@host or unix:///var/run/docker.sock"
            )
        if url.startswith("tcp://") and config.engine_cert_path is None:
            raise ConfigError(
                f"{owner}.engine {url!r} needs engine_cert_path, a directory with ca.pem, "
                "cert.pem and key.pem: an engine reached over TCP without TLS gives root on "
                "its host to anyone who can reach the port"
            )
    if config.engine_cert_path is not None:
        missing = [n for n in _CERT_FILES if not (config.engine_cert_path / n).is_file()]
        if missing:
            raise ConfigError(
                f"{owner}.engine_cert_path {config.engine_cert_path} lacks {', '.join(missing)} "
                "(Docker's DOCKER_CERT_PATH layout)"
            )
    if urls and config.transport == "tcp":
        raise ConfigError(
            f"{owner}: transport='tcp' publishes the worker on the engine host's loopback, "
            "which this machine cannot reach on a remote engine; use transport='stdio'"
        )
    retry = config.engine_retry
    if isinstance(retry, bool) or not isinstance(retry, int | float) or not retry > 0:
        raise ConfigError(f"{owner}.engine_retry must be a positive number of seconds")


# -- clients ----------------------------------------------------------------------------
_lock = threading.Lock()
_cert_paths: dict[str, Path | None] = {}
_clients: dict[tuple[str, str], docker.APIClient] = {}


def register(url: str, cert_path: Path | None) -> None:
    """Remember how to reach ``url`` (its TLS client certificates)."""
    with _lock:
        known = _cert_paths.get(url)
        if url in _cert_paths and known != cert_path:
            # A new client for the new certificates.
            for key in [k for k in _clients if k[1] == url]:
                _clients.pop(key).close()
        _cert_paths[url] = cert_path


def client(url: str, kind: Literal["default", "unbounded"] = "default") -> docker.APIClient:
    """The process's API client of engine ``url`` (``"unbounded"``: no read timeout).

    Raises:
        ConfigError: The docker SDK is missing, or ``url`` was never registered.
    """
    key = (kind, url)
    found = _clients.get(key)
    if found is not None:
        return found
    with _lock:
        found = _clients.get(key)
        if found is not None:
            return found
        if url not in _cert_paths:
            raise ConfigError(f"the Docker engine {url!r} is not configured in this process")
        try:
            import docker
            import docker.tls
        except ImportError as exc:
            raise ConfigError(
                "the container executor needs the docker SDK: pip install 'py-code-mode[container]'"
            ) from exc
        certs = _cert_paths[url]
        tls: Any = False
        if certs is not None and url.startswith("tcp://"):
            tls = docker.tls.TLSConfig(
                client_cert=(str(certs / "cert.pem"), str(certs / "key.pem")),
                ca_cert=str(certs / "ca.pem"),
                verify=True,
            )
        base_url = url.replace("tcp://", "https://", 1) if tls else url
        from docker.constants import MINIMUM_DOCKER_API_VERSION

        made = docker.APIClient(
            base_url=base_url,
            tls=tls,
            timeout=_API_TIMEOUT if kind == "default" else None,  # type: ignore[arg-type]
            max_pool_size=64,
            use_ssh_client=url.startswith("ssh://"),
            version=MINIMUM_DOCKER_API_VERSION,
        )
        # requests would let $REQUESTS_CA_BUNDLE replace the engine's own CA, so the
        # environment is ignored, and only then is the engine's API version asked.
        made.trust_env = False
        try:
            # The SDK keeps the negotiated version here (what version="auto" sets).
            made._version = str(made.version(api_version=False)["ApiVersion"])  # type: ignore[attr-defined]
        except Exception:
            made.close()
            raise
        _clients[key] = made
        return made


# -- health and load ----------------------------------------------------------------------
@dataclass
class _State:
    down_until: float = 0.0
    reason: str = ""
    running: int = 0
    checked: float = 0.0


class EngineSet:
    """Health and load of the engines this process uses (process-wide)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, _State] = {}

    def _state(self, url: str) -> _State:
        with self._lock:
            return self._states.setdefault(url, _State())

    def probe(self, url: str, retry: float, *, fresh: bool = False) -> bool:
        """Ask ``url`` for its running containers; mark it down for ``retry`` s if it fails."""
        state = self._state(url)
        now = time.monotonic()
        if now < state.down_until:
            return False
        if not fresh and now - state.checked < _INFO_TTL and state.down_until == 0.0:
            return True
        try:
            info = client(url).info()
        except Exception as exc:  # noqa: BLE001 - any failure means: not usable now
            self.mark_down(url, f"{type(exc).__name__}: {exc}", retry)
            return False
        with self._lock:
            if state.down_until:
                logger.info("Docker engine %s answers again", url)
            state.down_until = 0.0
            state.reason = ""
            state.running = int(info.get("ContainersRunning", 0))
            state.checked = now
        return True

    def mark_down(self, url: str, reason: str, retry: float) -> None:
        """Skip ``url`` for ``retry`` seconds."""
        state = self._state(url)
        with self._lock:
            if not state.down_until:
                logger.warning(
                    "Docker engine %s is not usable (%s); skipping it for %g s", url, reason, retry
                )
            state.down_until = time.monotonic() + retry
            state.reason = reason
            state.checked = 0.0

    def pick(self, urls: list[str], retry: float, exclude: set[str] | None = None) -> str:
        """The healthy engine with the fewest running containers (ties: first listed).

        Raises:
            ExecutorError: No engine answers; the message names each one's problem.
        """
        candidates = [u for u in urls if u not in (exclude or set())]
        healthy = [u for u in candidates if self.probe(u, retry, fresh=True)]
        if not healthy:
            reasons = "; ".join(f"{u}: {self._state(u).reason or 'excluded'}" for u in urls)
            raise ExecutorError(f"no Docker engine is usable ({reasons})")
        best = min(healthy, key=lambda u: (self._state(u).running, urls.index(u)))
        with self._lock:
            self._states[best].running += 1  # until the next probe counts it
        return best

    def reason(self, url: str) -> str:
        """Why ``url`` was last marked down ("" when it was not)."""
        return self._state(url).reason


engines = EngineSet()
"""The process's engine states."""


def _keyed(spec: Spec, url: str) -> Spec:
    suffix = hashlib.sha256(url.encode()).hexdigest()[:8]
    return replace(spec, engine=url, key=f"{spec.key}-{suffix}")


def prepare(config: ContainerConfig, exclude: set[str] | None = None) -> Spec:
    """The container spec for a new session: on the least loaded healthy engine.

    Without ``config.engine`` this is the environment's engine (``DOCKER_HOST``).
    Warm pools are per engine (the spec key includes it).

    Raises:
        ConfigError: The image is missing on the chosen engine.
        ExecutorError: No engine is usable.
    """
    from py_code_mode.execution.container.launch import prepare_engine

    urls = engine_urls(config)
    if not urls:
        return prepare_engine(config)
    for url in urls:
        register(url, config.engine_cert_path)
    tried = set(exclude or ())
    while True:
        url = engines.pick(urls, config.engine_retry, tried)
        try:
            return _keyed(prepare_engine(config, url), url)
        except ExecutorError as exc:
            engines.mark_down(url, str(exc), config.engine_retry)
            tried.add(url)


def prepare_every_engine(config: ContainerConfig) -> list[Spec]:
    """Container specs on every healthy configured engine (for filling warm pools).

    Raises:
        ConfigError: The image is missing on an engine.
        ExecutorError: No engine is usable.
    """
    from py_code_mode.execution.container.launch import prepare_engine

    urls = engine_urls(config)
    if not urls:
        return [prepare_engine(config)]
    specs = []
    for url in urls:
        register(url, config.engine_cert_path)
        if engines.probe(url, config.engine_retry, fresh=True):
            try:
                specs.append(_keyed(prepare_engine(config, url), url))
            except ExecutorError as exc:
                engines.mark_down(url, str(exc), config.engine_retry)
    if not specs:
        raise ExecutorError(f"no Docker engine is usable ({', '.join(urls)})")
    return specs


def ensure_live(config: ContainerConfig, spec: Spec) -> Spec:
    """``spec`` when its engine still answers, else a spec on another engine.

    Called before a worker is (re)started, so a session whose engine died restarts
    elsewhere.
    """
    if spec.engine is None or engines.probe(spec.engine, config.engine_retry, fresh=True):
        return spec
    logger.warning(
        "the engine %s of this session is gone (%s); starting its worker on another engine",
        spec.engine,
        engines.reason(spec.engine),
    )
    return prepare(config, exclude={spec.engine})
