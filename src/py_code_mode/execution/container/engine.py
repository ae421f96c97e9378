"""The Docker engine as the container executor uses it: clients, images, removal.

Everything here blocks (the docker SDK is synchronous): call it from a thread. The
SDK is imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Any, Literal

from py_code_mode.errors import ConfigError, ExecutorError

if TYPE_CHECKING:
    import docker

__all__ = [
    "api",
    "check_image",
    "docker_errors",
    "engine_of",
    "forget_image",
    "remove_all_live",
    "remove_container",
    "remove_in_background",
    "track",
]

logger = logging.getLogger(__name__)

_API_TIMEOUT = 120
_client_lock = threading.Lock()
_clients: dict[str, docker.APIClient] = {}
_checked_images: set[str] = set()
_live: set[str] = set()
"""Containers this process started and has not removed yet (removed at exit)."""
_engine_of: dict[str, str] = {}
"""Engine URL of each live container not on the environment's engine."""


def engine_of(container_id: str) -> str | None:
    """The engine URL a container was started on (None: the environment's engine)."""
    return _engine_of.get(container_id)


def api(
    kind: Literal["default", "unbounded"] = "default", engine: str | None = None
) -> docker.APIClient:
    """The process's Docker API client (``"unbounded"``: no read timeout, for execs).

    Args:
        kind: ``"unbounded"`` for calls that may block as long as a container lives.
        engine: URL of a configured engine (see :mod:`._engines`); None for the
            environment's engine (``DOCKER_HOST`` or the local socket).

    Raises:
        ConfigError: The docker SDK is not installed.
        ExecutorError: No engine is reachable.
    """
    if engine is not None:
        from py_code_mode.execution.container.engines import client as engine_client

        return engine_client(engine, kind)
    client = _clients.get(kind)
    if client is not None:
        return client
    with _client_lock:
        client = _clients.get(kind)
        if client is not None:
            return client
        try:  # the docker SDK is the optional [container] extra
            import docker
        except ImportError as exc:
            raise ConfigError(
                "the container executor needs the docker SDK: pip install 'py-code-mode[container]'"
            ) from exc
        try:
            timeout = _API_TIMEOUT if kind == "default" else None
            env_client = docker.from_env(timeout=timeout, max_pool_size=64)  # type: ignore[arg-type]
            env_client.api.ping()
        except docker.errors.DockerException as exc:
            raise ExecutorError(
                f"no Docker engine is reachable ({exc}); start it (`sudo systemctl start "
                "docker` or `dockerd &`), make sure this user may use /var/run/docker.sock, "
                "or set DOCKER_HOST"
            ) from exc
        client = env_client.api
        _clients[kind] = client
        return client


def docker_errors() -> Any:
    """The ``docker.errors`` module (imported lazily)."""
    import docker.errors  # the optional [container] extra; callers have a client already

    return docker.errors


def check_image(client: docker.APIClient, image: str, engine: str | None = None) -> None:
    """Make sure ``image`` is present (once per process, engine and image).

    Raises:
        ConfigError: It is not there, with how to build or pull it.
        ExecutorError: The engine failed.
    """
    checked = image if engine is None else f"{engine} {image}"
    if checked in _checked_images:
        return
    errors = docker_errors()
    try:
        client.inspect_image(image)  # type: ignore[no-untyped-call]
    except errors.ImageNotFound as exc:
        raise ConfigError(
            f"the image {image!r} is not present on the Docker engine; build the default "
            "image with `py-code-mode image build` (see docker/README.md), `docker pull` it, "
            "or set ContainerConfig.image to an image with python3 >= 3.11"
        ) from exc
    except errors.APIError as exc:
        raise ExecutorError(f"could not inspect the image {image!r}: {exc}") from exc
    except Exception as exc:
        if engine is None:
            raise
        raise ExecutorError(f"the Docker engine {engine} does not answer: {exc}") from exc
    _checked_images.add(checked)


def forget_image(image: str) -> None:
    """Check ``image`` again next time (it turned out to be gone)."""
    for checked in [c for c in _checked_images if c == image or c.endswith(f" {image}")]:
        _checked_images.discard(checked)


def track(container_id: str, engine: str | None = None) -> None:
    """Remember a container this process started, to remove it at exit at the latest."""
    _live.add(container_id)
    if engine is not None:
        _engine_of[container_id] = engine


def remove_container(container_id: str) -> None:
    """Remove a container (killing it); one that is already gone is fine."""
    errors = docker_errors()
    engine = _engine_of.get(container_id)
    try:
        api(engine=engine).remove_container(container_id, force=True)
    except errors.NotFound:
        pass
    except errors.APIError as exc:
        if exc.status_code != 409:  # 409: removal already in progress
            logger.warning("could not remove container %s: %s", container_id[:12], exc)
    except Exception as exc:
        if engine is None:
            raise
        # A remote engine that is gone took its containers with it (or will remove
        # them when it comes back: the worker ends when its attach stream closes).
        logger.info("could not remove container %s on %s: %s", container_id[:12], engine, exc)
    _live.discard(container_id)
    _engine_of.pop(container_id, None)


def remove_in_background(container_id: str) -> None:
    """:func:`remove_container` on a thread of its own, without waiting for it."""
    threading.Thread(
        target=remove_container,
        args=(container_id,),
        name=f"py-code-mode-rm-{container_id[:12]}",
        daemon=True,
    ).start()


def remove_all_live() -> None:
    """Remove every container this process started and still has (at interpreter exit)."""
    for container_id in list(_live):
        with contextlib.suppress(Exception):
            remove_container(container_id)
