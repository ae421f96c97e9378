"""Build the container executor's ready-made image from ``docker/Dockerfile``.

Behind ``py-code-mode image build``. The build context is assembled in a temporary
directory: the Dockerfile, plus (only when asked) a CA bundle for machines behind an
intercepting HTTPS proxy and a copy of the worker package. Progress lines of the
build go to a callback, so the CLI can print them and tests can collect them.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from py_code_mode._private.requirements import validate_requirement
from py_code_mode.errors import ConfigError, DependencyError, ExecutorError
from py_code_mode.execution._isolated.source import WORKER_PACKAGE, worker_source_files

__all__ = ["DEFAULT_BASE_IMAGE", "ImageBuild", "build_image", "dockerfile_path"]

logger = logging.getLogger(__name__)

DEFAULT_BASE_IMAGE = "python:3.12-slim"
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TAG_RE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]{0,254}$")
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class ImageBuild:
    """What a finished build produced.

    Attributes:
        tag: The tag the image was given.
        image_id: The image's id (``sha256:...``).
    """

    tag: str
    image_id: str


def dockerfile_path() -> Path:
    """The Dockerfile shipped in the source tree (``docker/Dockerfile``).

    Raises:
        ConfigError: This installation has no ``docker/`` folder (a wheel); use the
            repository's ``docker/Dockerfile`` directly then.
    """
    for candidate in (
        _PACKAGE_ROOT.parent.parent / "docker" / "Dockerfile",
        _PACKAGE_ROOT / "_docker" / "Dockerfile",
    ):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        "docker/Dockerfile was not found next to this installation; build from a checkout "
        "of the py-code-mode repository, or run `docker build` on its docker/ folder"
    )


def _check_tag(value: str, what: str) -> str:
    if not isinstance(value, str) or not _TAG_RE.match(value):
        raise ConfigError(f"{what} {value!r} is not a valid image reference")
    return value


def _stage_context(root: Path, dockerfile: Path, ca_bundle: Path | None, with_worker: bool) -> None:
    shutil.copy2(dockerfile, root / "Dockerfile")
    (root / "ca").mkdir()
    (root / "worker").mkdir()
    (root / "ca" / ".keep").write_text("")
    (root / "worker" / ".keep").write_text("")
    if ca_bundle is not None:
        shutil.copy2(ca_bundle, root / "ca" / "host-ca.crt")
    if with_worker:
        package = root / "worker" / WORKER_PACKAGE
        package.mkdir()
        for source in worker_source_files():
            shutil.copy2(source, package / source.name)


def build_image(
    tag: str = "py-code-mode-worker:latest",
    *,
    base_image: str = DEFAULT_BASE_IMAGE,
    deps: Sequence[str] = (),
    ca_bundle: Path | None = None,
    with_worker: bool = False,
    pull: bool = False,
    no_cache: bool = False,
    on_progress: Callable[[str], None] | None = None,
) -> ImageBuild:
    """Build the image (blocking; run it in a thread from async code).

    Args:
        tag: Name of the image; the container executor's default is
            ``py-code-mode-worker:latest``.
        base_image: Image with python3 >= 3.11 to build on.
        deps: Packages to bake in (requirement specs, validated like ``deps.add``).
        ca_bundle: PEM file of extra certificate authorities to trust while building
            and at run time (for an intercepting HTTPS proxy).
        with_worker: Also install the worker, for platforms that start containers
            themselves and reach them over TCP (``py-code-mode-listen``).
        pull: Pull a newer base image first.
        no_cache: Build without the layer cache.
        on_progress: Called with each progress line of the build.

    Returns:
        The tag and id of the built image.

    Raises:
        ConfigError: A bad tag, base image, dep or CA bundle; no docker SDK.
        ExecutorError: No engine is reachable, or the build failed (the message ends
            with the build's last output lines).
    """
    _check_tag(tag, "tag")
    _check_tag(base_image, "base image")
    try:
        specs = [validate_requirement(spec) for spec in deps]
    except DependencyError as exc:
        raise ConfigError(f"image deps: {exc}") from exc
    if ca_bundle is not None and not Path(ca_bundle).is_file():
        raise ConfigError(f"the CA bundle {ca_bundle} is not a file")
    report = on_progress or (lambda line: logger.info("%s", line))
    try:  # the docker SDK is the optional [container] extra
        import docker
        import docker.errors
    except ImportError as exc:
        raise ConfigError(
            "building the image needs the docker SDK: pip install 'py-code-mode[container]'"
        ) from exc
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as exc:
        raise ExecutorError(
            f"no Docker engine is reachable ({exc}); start it or set DOCKER_HOST"
        ) from exc
    build_args = {
        "PYTHON_IMAGE": base_image,
        "DEPS": " ".join(specs),
        "USE_HOST_CA": "1" if ca_bundle is not None else "0",
        "WITH_WORKER": "1" if with_worker else "0",
    }
    recent: list[str] = []
    image_id = ""
    with tempfile.TemporaryDirectory(prefix="py-code-mode-image-") as tmp:
        context = Path(tmp)
        _stage_context(
            context, dockerfile_path(), None if ca_bundle is None else Path(ca_bundle), with_worker
        )
        report(f"building {tag} from {base_image}")
        try:
            events = client.api.build(
                path=str(context),
                tag=tag,
                buildargs=build_args,
                decode=True,
                rm=True,
                forcerm=True,
                pull=pull,
                nocache=no_cache,
            )
            for event in events:
                image_id = _handle_event(event, report, recent) or image_id
        except docker.errors.APIError as exc:
            raise ExecutorError(f"the image build failed: {exc}") from exc
        finally:
            client.close()
    if not image_id:
        raise ExecutorError("the image build ended without producing an image")
    report(f"built {tag} ({image_id[:19]})")
    return ImageBuild(tag=tag, image_id=image_id)


_TLS_SIGNS = ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed", "SSLError", "SSL:")
_DNS_SIGNS = ("Temporary failure in name resolution", "Name or service not known", "getaddrinfo")


def build_failure_hint(output: str) -> str:
    """A line naming the likely cause of a failed build, or ``""``."""
    if any(sign in output for sign in _TLS_SIGNS):
        return (
            "\nlikely cause: an HTTPS proxy intercepts TLS and the image does not trust its "
            "CA; rebuild with --ca-bundle PATH (your system bundle, e.g. "
            "/etc/ssl/certs/ca-certificates.crt)"
        )
    if any(sign in output for sign in _DNS_SIGNS):
        return (
            "\nlikely cause: the build cannot reach the package index (no DNS or network); "
            "build where it is reachable or bake nothing (--dep) into the image"
        )
    if "returned a non-zero code" in output and ("pip" in output or "uv" in output):
        return (
            "\nlikely cause: installing packages failed; behind a TLS-intercepting proxy "
            "pass --ca-bundle PATH"
        )
    return ""


def _handle_event(event: Any, report: Callable[[str], None], recent: list[str]) -> str:
    """Report one build event; returns the image id when the event carries it."""
    if not isinstance(event, dict):
        return ""
    if "error" in event:
        detail = event.get("errorDetail", {}).get("message") or event["error"]
        tail = "\n".join(recent[-15:])
        hint = build_failure_hint(f"{detail}\n{tail}")
        raise ExecutorError(f"the image build failed: {str(detail).strip()}\n{tail}{hint}".strip())
    text = event.get("stream") or event.get("status") or ""
    if isinstance(text, str):
        for line in _ANSI_RE.sub("", text).splitlines():
            if line.strip():
                recent.append(line.rstrip())
                del recent[:-50]
                report(line.rstrip())
    aux = event.get("aux")
    if isinstance(aux, dict) and isinstance(aux.get("ID"), str):
        return str(aux["ID"])
    return ""
