# ruff: noqa: E501 - a table of attack code, one line per case
"""Hostile agent code against every isolating executor: nothing leaks, the host holds.

Every case runs in a shared session of each variant (jailed subprocess, container
under runc, container under runsc) and is checked the same way: no planted canary
(host environment, home, storage base) in anything that comes back, no file created
on the host, no signal delivered to the host, no connection to the host's loopback
service, the host alive, and the session still running code afterwards. Cases marked
``must_fail`` must also have been refused (their code evaluates to ``"contained"``).
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass

import pytest

from py_code_mode import Session
from py_code_mode.execution import SubprocessExecutor

from .conftest import Host

pytestmark = pytest.mark.asyncio(loop_scope="module")

PRELUDE = """
def _must_fail(fn):
    try:
        got = fn()
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        return "contained"
    return "ESCAPED: " + repr(got)[:300]
"""


@dataclass(frozen=True)
class Case:
    id: str
    code: str
    must_fail: bool = False
    destructive: bool = False  # leaves processes or damage behind: reset afterwards
    emulated_by_gvisor: bool = False
    """Allowed under runsc: gVisor's own kernel implements it without the host's."""
    timeout: float = 30.0


def fail(id: str, expr: str, **kw: object) -> Case:
    """A case whose operation must raise inside the sandbox."""
    return Case(id, f"_must_fail(lambda: {expr})", must_fail=True, **kw)  # type: ignore[arg-type]


def code(id: str, body: str, **kw: object) -> Case:
    return Case(id, textwrap.dedent(body), **kw)  # type: ignore[arg-type]


CASES = [
    # -- secrets: environment and /proc ---------------------------------------------------
    code("env-dump", "import os\ndict(os.environ)"),
    code(
        "env-subprocess",
        "import subprocess\nsubprocess.run(['env'], capture_output=True, text=True).stdout",
    ),
    code("proc-self-environ", "open('/proc/self/environ', 'rb').read()"),
    code("proc-1-environ", "_must_fail(lambda: open('/proc/1/environ', 'rb').read())"),
    code(
        "proc-all-environ",
        """
        import os
        found = []
        for pid in os.listdir('/proc'):
            try:
                found.append(open(f'/proc/{pid}/environ', 'rb').read())
            except Exception:
                pass
        found
        """,
    ),
    fail("proc-host-pid-environ", "open('/proc/HOST_PID/environ', 'rb').read()"),
    fail("proc-host-pid-cmdline", "open('/proc/HOST_PID/cmdline', 'rb').read()"),
    code(
        "proc-process-list",
        """
        import os
        cmds = []
        for pid in os.listdir('/proc'):
            if pid.isdigit():
                try:
                    cmds.append(open(f'/proc/{pid}/cmdline', 'rb').read())
                except Exception:
                    pass
        'contained' if not any(b'pytest' in c or b'dockerd' in c for c in cmds) else cmds
        """,
        must_fail=True,
    ),
    fail("proc-host-root-home", "open('/proc/HOST_PID/root' + 'HOME_CANARY_PATH').read()"),
    fail("proc-1-root-home", "open('/proc/1/root' + 'HOME_CANARY_PATH').read()"),
    fail(
        "proc-parent-root-home",
        "open(f'/proc/{__import__(\"os\").getppid()}/root' + 'HOME_CANARY_PATH').read()",
    ),
    code("proc-self-mountinfo", "open('/proc/self/mountinfo').read()"),
    # -- the host's home and storage base --------------------------------------------------
    fail("home-canary-read", "open('HOME_CANARY_PATH').read()"),
    code(
        "home-listing",
        "import os\n_must_fail(lambda: [n for n in os.listdir('HOME_DIR') if 'canary' in n] or 1/0)",
        must_fail=True,
    ),
    fail(
        "home-ssh-keys",
        "[open(p).read() for p in __import__('glob').glob('HOME_DIR/.ssh/*')] or 1/0",
    ),
    fail("home-bash-history", "open('HOME_DIR/.bash_history').read()"),
    fail("home-docker-config", "open('HOME_DIR/.docker/config.json').read()"),
    fail("storage-canary-read", "open('STORAGE_DIR/canary-TOKEN.txt').read()"),
    fail("storage-listing", "__import__('os').listdir('STORAGE_DIR') or 1/0"),
    fail("storage-workflow-write", "open('STORAGE_DIR/workflows/pwn_TOKEN.py', 'w').write('x')"),
    fail("storage-root-write", "open('STORAGE_DIR/pcm-pwn-TOKEN', 'w').write('x')"),
    # -- host files ------------------------------------------------------------------------
    fail("etc-shadow", "open('/etc/shadow').read()"),
    fail("etc-sudoers", "open('/etc/sudoers').read()"),
    fail("ssh-host-key", "open('/etc/ssh/ssh_host_ed25519_key').read()"),
    fail("root-home-listing", "__import__('os').listdir('/root/.ssh')"),
    fail("docker-socket-exists", "__import__('os').stat('/var/run/docker.sock')"),
    code(
        "docker-socket-connect",
        """
        import socket
        def go():
            s = socket.socket(socket.AF_UNIX)
            s.connect('/run/docker.sock')
            s.sendall(b'GET /containers/json HTTP/1.0\\r\\n\\r\\n')
            return s.recv(1000)
        _must_fail(go)
        """,
        must_fail=True,
    ),
    fail("containerd-socket", "__import__('os').stat('/run/containerd/containerd.sock')"),
    # -- writes ----------------------------------------------------------------------------
    fail("write-etc", "open('/etc/pcm-pwn-TOKEN', 'w').write('x')"),
    fail("write-usr-lib", "open('/usr/lib/pcm-pwn-TOKEN', 'w').write('x')"),
    fail("write-home", "open('HOME_DIR/pcm-pwn-TOKEN', 'w').write('x')"),
    code(
        "write-host-tmp",
        """
        import os
        open('/tmp/pcm-pwn-TOKEN', 'w').write('x')  # the sandbox's own /tmp: allowed
        'contained' if os.path.exists('/tmp/pcm-pwn-TOKEN') else 'no tmp'
        """,
        must_fail=True,
    ),
    fail("chmod-python", "__import__('os').chmod(__import__('sys').executable, 0o777)"),
    fail(
        "replace-python",
        "open(__import__('os').path.realpath(__import__('sys').executable), 'ab').write(b'x')",
    ),
    # -- venv poisoning --------------------------------------------------------------------
    code(
        "venv-pth",
        """
        import site, sys, sysconfig
        dirs = {sysconfig.get_paths()['purelib'], *site.getsitepackages()}
        _must_fail(lambda: [open(d + '/pcm_pwn_TOKEN.pth', 'w').write('import os') for d in dirs])
        """,
        must_fail=True,
    ),
    fail(
        "venv-sitecustomize",
        "open(__import__('sysconfig').get_paths()['purelib'] + '/sitecustomize.py', 'w').write('x')",
    ),
    fail("stdlib-poison", "open(__import__('os').__file__, 'a').write('# pcm_pwn_TOKEN')"),
    code(
        "worker-code-poison",
        """
        import sys
        paths = [m.__file__ for m in list(sys.modules.values())
                 if getattr(m, '__file__', None) and 'worker' in (m.__name__ or '')]
        _must_fail(lambda: [open(p, 'a').write('# pcm_pwn_TOKEN') for p in paths] and 1/0)
        """,
        must_fail=True,
    ),
    code(
        "overlay-pth",
        """
        import sys
        shared = [p for p in sys.path if '/venvs/' in p or p.startswith(sys.base_prefix)]
        _must_fail(lambda: [open(d + '/pcm_pwn_TOKEN.pth', 'w').write('import os') for d in shared] or 1/0)
        """,
        must_fail=True,
    ),
    # -- process, thread, memory and disk bombs --------------------------------------------
    code(
        "fork-bomb",
        """
        import os, time
        n = 0
        try:
            for _ in range(3000):
                if os.fork() == 0:
                    time.sleep(120)
                    os._exit(0)
                n += 1
        except OSError:
            pass
        'contained' if n < 3000 else n
        """,
        must_fail=True,
        destructive=True,
    ),
    code(
        "thread-bomb",
        """
        import threading, time
        n = 0
        try:
            for _ in range(10000):
                threading.Thread(target=time.sleep, args=(120,), daemon=True).start()
                n += 1
        except (RuntimeError, OSError, MemoryError):
            pass
        'contained' if n < 10000 else n
        """,
        must_fail=True,
        destructive=True,
    ),
    fail("memory-bomb", "bytearray(8 << 30)"),
    code(
        "memory-bomb-children",
        """
        import subprocess, sys
        code = 'x = bytearray(700 << 20); import time; time.sleep(5)'
        procs = [subprocess.Popen([sys.executable, '-c', code]) for _ in range(4)]
        codes = [p.wait(60) for p in procs]
        'contained' if any(c != 0 for c in codes) else codes
        """,
        must_fail=True,
        destructive=True,
    ),
    code(
        "disk-bomb-tmp",
        """
        def go():
            with open('/tmp/fill', 'wb') as f:
                for _ in range(2048):
                    f.write(b'x' * (1 << 20))
        result = _must_fail(go)
        import os
        os.remove('/tmp/fill')
        result
        """,
        must_fail=True,
    ),
    code(
        "disk-bomb-workdir",
        """
        import os
        def go():
            with open('fill.bin', 'wb') as f:
                for _ in range(2048):
                    f.write(b'x' * (1 << 20))
        result = _must_fail(go)
        os.remove('fill.bin')
        result
        """,
        must_fail=True,
    ),
    code(
        "fd-exhaustion",
        "files = []\n_must_fail(lambda: [files.append(open('/dev/null')) for _ in range(100000)])",
        must_fail=True,
        destructive=True,
    ),
    # -- signals ---------------------------------------------------------------------------
    fail("signal-host-pid", "__import__('os').kill(HOST_PID, __import__('signal').SIGUSR1)"),
    fail(
        "signal-host-group",
        "__import__('os').killpg(__import__('os').getpgid(HOST_PID), __import__('signal').SIGUSR1)",
    ),
    code(
        "signal-parent-kill",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\ntime.sleep(2)\n'contained'",
        destructive=True,
    ),
    code(
        "signal-pid1-kill",
        "import os, signal\ntry:\n    os.kill(1, signal.SIGKILL)\nexcept OSError:\n    pass\nimport time\ntime.sleep(1)\n'contained'",
        destructive=True,
    ),
    fail(
        "ptrace-attach",
        "__import__('ctypes').CDLL(None, use_errno=True).ptrace(16, HOST_PID, 0, 0) == 0 or 1/0",
    ),
    # -- network ---------------------------------------------------------------------------
    fail(
        "raw-socket",
        "__import__('socket').socket(__import__('socket').AF_INET, __import__('socket').SOCK_RAW, 1)",
    ),
    fail("packet-socket", "__import__('socket').socket(17, __import__('socket').SOCK_RAW, 0)"),
    fail("host-loopback", "__import__('socket').create_connection(('127.0.0.1', PORT), timeout=2)"),
    fail("host-loopback-v6", "__import__('socket').create_connection(('::1', PORT), timeout=2)"),
    fail("dns-lookup", "__import__('socket').getaddrinfo('pypi.org', 443)"),
    fail("public-tcp", "__import__('socket').create_connection(('1.1.1.1', 443), timeout=2)"),
    fail(
        "udp-dns-out",
        "__import__('socket').socket(__import__('socket').AF_INET, __import__('socket').SOCK_DGRAM).sendto(b'x', ('8.8.8.8', 53)) and __import__('socket').create_connection(('8.8.8.8', 53), timeout=2)",
    ),
    fail(
        "cloud-metadata",
        "__import__('urllib.request').request.urlopen('http://169.254.169.254/latest/meta-data/', timeout=2).read()",
    ),
    fail(
        "docker-bridge-gateway",
        "__import__('socket').create_connection(('172.17.0.1', 2375), timeout=2)",
    ),
    # -- namespaces, mounts, privileges ----------------------------------------------------
    fail(
        "unshare-user",
        "__import__('ctypes').CDLL(None, use_errno=True).unshare(0x10000000) == 0 or 1/0",
    ),
    fail(
        "unshare-mount",
        "__import__('ctypes').CDLL(None, use_errno=True).unshare(0x00020000) == 0 or 1/0",
        emulated_by_gvisor=True,
    ),
    fail(
        "unshare-command",
        "__import__('subprocess').run(['unshare', '-r', 'id'], check=True, capture_output=True)",
        emulated_by_gvisor=True,
    ),
    fail(
        "mount-tmpfs",
        "__import__('ctypes').CDLL(None, use_errno=True).mount(b'none', b'/tmp', b'tmpfs', 0, None) == 0 or 1/0",
    ),
    fail("chroot", "__import__('os').chroot('/')"),
    fail("setuid-root", "__import__('os').setuid(0)"),
    fail("setgroups", "__import__('os').setgroups([0])"),
    # -- devices ---------------------------------------------------------------------------
    fail("dev-write", "open('/dev/pcm-pwn-TOKEN', 'wb').write(b'x')"),
    code(
        "dev-shm-bomb",
        """
        def go():
            with open('/dev/shm/fill', 'wb') as f:
                for _ in range(2048):
                    f.write(b'x' * (1 << 20))
        result = _must_fail(go)
        import os
        os.remove('/dev/shm/fill')
        result
        """,
        must_fail=True,
    ),
    fail("dev-kmsg", "open('/dev/kmsg', 'rb').read(100)"),
    fail("dev-mem", "open('/dev/mem', 'rb').read(10)"),
    fail(
        "mknod-block",
        "__import__('os').mknod('/tmp/sda', 0o600 | 0o060000, __import__('os').makedev(8, 0)) or open('/tmp/sda', 'rb').read(512)",
    ),
    code(
        "dev-listing",
        "import os\nbad = [d for d in os.listdir('/dev') if d.startswith(('sd', 'vd', 'nvme', 'mem', 'kmem', 'port'))]\n'contained' if not bad else bad",
        must_fail=True,
    ),
]


def _render(case: Case, host: Host) -> str:
    text = case.code
    for name, value in host.placeholders().items():
        text = text.replace(name, value)
    return PRELUDE + text


def _venv(session: Session) -> object:
    executor = session.executor
    return executor.venv_path if isinstance(executor, SubprocessExecutor) else None


async def _assert_session_works(session: Session) -> None:
    after = await session.run("1 + 1", timeout=60)
    if not after.is_ok:  # a case may have killed the worker; the next run replaces it
        after = await session.run("1 + 1", timeout=60)
    assert after.is_ok, after.error
    assert after.value == 2


async def test_the_suite_has_at_least_sixty_cases() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_hostile_code_is_contained(
    hostile: Session, host: Host, case: Case, request: pytest.FixtureRequest
) -> None:
    variant = request.node.callspec.params["hostile"]
    result = await hostile.run(_render(case, host), timeout=case.timeout)
    seen = f"{result.value!r}\n{result.stdout}\n{result.error}"
    for canary in host.canaries:
        assert canary not in seen, f"{case.id} leaked a canary: {seen[:500]}"
    relaxed = case.emulated_by_gvisor and variant == "container-runsc"
    if case.must_fail and result.is_ok and not relaxed:
        assert result.value == "contained", f"{case.id} was not contained: {seen[:500]}"
    venv = _venv(hostile)
    written = [p for p in host.write_targets(venv) if os.path.lexists(p)]  # type: ignore[arg-type]
    assert written == [], f"{case.id} wrote on the host: {written}"
    assert host.signals == [], f"{case.id} signalled the host"
    assert host.connections == [], f"{case.id} reached the host's loopback service"
    if case.destructive:
        await hostile.reset()
    await _assert_session_works(hostile)


async def test_each_variant_runs_where_it_says(
    hostile: Session, request: pytest.FixtureRequest
) -> None:
    variant = request.node.callspec.params["hostile"]
    result = await hostile.run("import os, platform\n[platform.release(), os.getuid()]")
    release, uid = result.value
    assert uid == 65534
    # gVisor's own kernel reports itself as Linux 4.4.0; runc and bwrap show the host's.
    assert (release == "4.4.0") == (variant == "container-runsc"), release
