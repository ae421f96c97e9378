"""Packages installed at run time inside a container, where the worker imports them.

Installs go to a directory of the tmpfs work dir that is on the worker's
``sys.path`` (:data:`~py_code_mode.execution.container.spec.SITE_DIR`), with
``uv`` when the image has it, else pip (bootstrapped into a venv when missing); the
image's own packages are never changed. Each step is a small Python script run with
``docker exec`` as the worker's user. Without a network nothing can be installed:
the errors then say how to bake packages into the image instead.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from packaging.requirements import Requirement

from py_code_mode._private.installed import unsatisfied, versions_from_pairs
from py_code_mode._private.requirements import canonical_name
from py_code_mode.errors import DependencyError
from py_code_mode.execution.container.config import ContainerConfig
from py_code_mode.execution.container.engine import api, docker_errors, engine_of
from py_code_mode.execution.container.spec import EGRESS_URL_FILE, PRIVATE_DIR, SITE_DIR, WORKDIR

__all__ = ["ContainerPackages"]

_LIST_TIMEOUT = 120.0

# Runs via ``docker exec``: distributions visible to the worker, as [[name, version]].
LIST_SCRIPT = r"""
import json, sys
from importlib import metadata
paths = [sys.argv[1]] + [p for p in sys.path if p]
found = []
for dist in metadata.distributions(path=paths):
    name = dist.metadata["Name"] if dist.metadata else None
    if name:
        found.append([name, dist.version])
print(json.dumps(found))
"""

# Runs via ``docker exec``: installs specs into the worker's package directory with uv
# when the image has it, else pip (bootstrapped into a venv when missing).
INSTALL_SCRIPT = r"""
import json, os, shutil, subprocess, sys
args = json.loads(sys.argv[1])
target, specs, timeout = args["target"], args["specs"], args["timeout"]
uv = shutil.which("uv")
if uv:
    cmd = [uv, "pip", "install", "--python", sys.executable, "--target", target, *specs]
else:
    try:
        import pip  # noqa: F401
        python = sys.executable
    except ImportError:
        venv = args["pip_venv"]
        python = os.path.join(venv, "bin", "python")
        if not os.path.exists(python):
            print("no uv or pip in the image: bootstrapping pip with python -m venv", flush=True)
            made = subprocess.run([sys.executable, "-m", "venv", venv], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=timeout)
            if made.returncode:
                sys.stdout.write(made.stdout.decode(errors="replace"))
                print("the image has neither uv nor pip nor a working venv module; "
                      "bake the packages into the image instead")
                sys.exit(made.returncode)
    cmd = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
           "--no-cache-dir", "--target", target, *specs]
env = dict(os.environ)
proxy_file = args.get("proxy_file")
if proxy_file and os.path.exists(proxy_file):  # network="allowlist": the worker's forwarder
    with open(proxy_file, encoding="ascii") as fh:
        url = fh.read().strip()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[name] = url
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
try:
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=timeout, env=env)
except subprocess.TimeoutExpired:
    print(f"the installer did not finish within {timeout} s")
    sys.exit(124)
sys.stdout.write(done.stdout.decode(errors="replace"))
sys.exit(done.returncode)
"""

# Runs via ``docker exec``: removes distributions from the worker's package directory
# using their RECORD files (pip has no --target uninstall).
UNINSTALL_SCRIPT = r"""
import json, os, re, shutil, sys
from importlib import metadata
args = json.loads(sys.argv[1])
target = args["target"]
def canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()
wanted = {canon(n) for n in args["names"]}
removed = []
for dist in metadata.distributions(path=[target]):
    name = dist.metadata["Name"] if dist.metadata else None
    if not name or canon(name) not in wanted:
        continue
    dirs = set()
    for entry in dist.files or ():
        path = os.path.realpath(str(dist.locate_file(entry)))
        if not path.startswith(os.path.realpath(target) + os.sep):
            continue
        dirs.add(os.path.dirname(path))
        try:
            os.remove(path)
        except OSError:
            pass
    for path in sorted(dirs, key=len, reverse=True):
        while path.startswith(os.path.realpath(target) + os.sep):
            if path.endswith((".dist-info", "__pycache__")):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.rmdir(path)
                except OSError:
                    break
            path = os.path.dirname(path)
    removed.append(name)
print(json.dumps(removed))
"""


class ContainerPackages:
    """Lists, installs and uninstalls the worker's packages in a session's containers.

    Remembers what was installed at run time (:attr:`runtime_specs`), so a
    replacement container can be given the same packages.

    Args:
        config: The executor's settings (interpreter, user, network, timeouts).
    """

    def __init__(self, config: ContainerConfig) -> None:
        self._config = config
        self.runtime_specs: list[str] = []

    async def missing(self, container_id: str, specs: list[str]) -> list[str]:
        """Specs the container's Python does not satisfy yet.

        Raises:
            DependencyError: The container's packages could not be listed.
        """
        code, output = await self._exec(container_id, LIST_SCRIPT, SITE_DIR, _LIST_TIMEOUT)
        if code != 0:
            raise DependencyError(f"could not list the container's packages:\n{output[-2000:]}")
        try:
            pairs = json.loads(output.strip().splitlines()[-1])
        except (ValueError, IndexError) as exc:
            raise DependencyError(f"unexpected package listing from the container: {exc}") from exc
        return await asyncio.to_thread(_unsatisfied, specs, pairs)

    async def install(self, container_id: str, specs: Sequence[str]) -> str:
        """Install the specs the container lacks.

        Raises:
            DependencyError: The container has no network, or the installer failed.
        """
        config = self._config
        missing = await self.missing(container_id, list(specs))
        if not missing:
            return f"already installed: {', '.join(specs)}"
        if config.network == "none":
            raise DependencyError(
                f"cannot install {', '.join(missing)}: the container has no network "
                "(ContainerConfig.network='none'). Bake the packages into the image "
                "(`py-code-mode image build --dep NAME`, or `RUN uv pip install --system "
                "...` in your Dockerfile) and list them in the executor's deps, or give "
                "the container a network (ContainerConfig(network='bridge'))."
            )
        args = {
            "target": SITE_DIR,
            "specs": missing,
            "timeout": config.install_timeout,
            "pip_venv": f"{PRIVATE_DIR}/pip-venv",
            "proxy_file": EGRESS_URL_FILE if config.network == "allowlist" else None,
        }
        code, output = await self._exec(
            container_id, INSTALL_SCRIPT, args, timeout=config.install_timeout + 60
        )
        if code != 0:
            raise DependencyError(
                f"installing {', '.join(missing)} inside the container failed (exit "
                f"{code}):\n{output[-3000:]}"
            )
        self.runtime_specs = list(dict.fromkeys([*self.runtime_specs, *missing]))
        return output

    async def uninstall(self, container_id: str, names: Sequence[str]) -> str:
        """Uninstall packages installed at run time; packages of the image stay.

        Raises:
            DependencyError: The uninstall script failed.
        """
        code, output = await self._exec(
            container_id, UNINSTALL_SCRIPT, {"target": SITE_DIR, "names": list(names)}, 120
        )
        if code != 0:
            raise DependencyError(f"uninstalling {', '.join(names)} failed:\n{output[-3000:]}")
        try:
            removed = [str(n) for n in json.loads(output.strip().splitlines()[-1])]
        except (ValueError, IndexError):
            removed = []
        gone = {canonical_name(n) for n in removed}
        self.runtime_specs = [
            s for s in self.runtime_specs if canonical_name(_spec_name(s)) not in gone
        ]
        kept = [n for n in names if canonical_name(n) not in gone]
        message = f"removed {', '.join(removed)}" if removed else "nothing was removed"
        if kept:
            message += (
                f"; {', '.join(kept)}: not installed at run time (part of the image, or "
                "not installed), so left in place"
            )
        return message

    async def _exec(
        self, container_id: str, script: str, arg: Any, timeout: float
    ) -> tuple[int, str]:
        """Run a Python script in the container as the worker's user; (exit code, output)."""
        argument = arg if isinstance(arg, str) else json.dumps(arg)
        # -I: the workdir (agent code writes there) and PYTHON* variables stay off
        # sys.path, so a planted json.py cannot run in these scripts.
        command = [self._config.python, "-I", "-c", script, argument]
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(_exec_blocking, container_id, command, self._config.user),
                timeout,
            )
        except TimeoutError:
            raise DependencyError(
                f"a command in the container took longer than {timeout:g} s"
            ) from None


_MAX_EXEC_OUTPUT = 8 * 1024 * 1024
"""Bytes of a deps script's output kept (the tail): the container, where agent code
runs, decides how much it prints; callers read only the last line or the last lines."""


def _exec_blocking(container_id: str, command: list[str], user: str) -> tuple[int, str]:
    errors = docker_errors()
    client = api("unbounded", engine_of(container_id))
    try:
        created = client.exec_create(container_id, command, user=user, workdir=WORKDIR)
        tail = bytearray()
        for chunk in client.exec_start(created["Id"], stream=True):
            tail += chunk
            if len(tail) > _MAX_EXEC_OUTPUT:
                del tail[:-_MAX_EXEC_OUTPUT]
        code = client.exec_inspect(created["Id"]).get("ExitCode")
    except errors.APIError as exc:
        raise DependencyError(f"could not run a command in the container: {exc}") from exc
    text = tail.decode("utf-8", errors="replace")
    return (int(code) if code is not None else -1), text


def _spec_name(spec: str) -> str:
    return Requirement(spec).name


def _unsatisfied(specs: Sequence[str], pairs: Any) -> list[str]:
    """Specs not satisfied by the ``[name, version]`` pairs listed in the container."""
    return unsatisfied(specs, versions_from_pairs(pairs))
