"""Scratch directories name their owner; the sweep removes only ours, of dead owners."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from py_code_mode._private import scratch


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait(15)
    return proc.pid


def test_the_sweep_removes_only_our_real_directories_of_dead_owners(tmp_path: Path) -> None:
    dead, live = dead_pid(), os.getppid()
    stale = tmp_path / f"py-code-mode-{dead}-abc123"
    (stale / "work").mkdir(parents=True)
    (stale / "work" / "f").write_text("x")
    stale_egress = tmp_path / f"py-code-mode-egress-{dead}-xyz"
    stale_egress.mkdir()
    kept = [
        tmp_path / f"py-code-mode-{live}-abc",  # owner alive
        tmp_path / "py-code-mode-0rt44rg_",  # no owner in the name
        tmp_path / f"other-{dead}-abc",  # not ours
        tmp_path / f"py-code-mode-{dead}-a.b",  # not a name we make
    ]
    for path in kept:
        path.mkdir()
    target = tmp_path / "target"
    (target / "precious").mkdir(parents=True)
    link = tmp_path / f"py-code-mode-{dead}-link"
    link.symlink_to(target)
    inside = stale / "work" / "escape"
    inside.symlink_to(target)

    swept = scratch.sweep_stale(tmp_path)

    assert sorted(swept) == sorted([stale, stale_egress])
    assert not stale.exists()
    assert not stale_egress.exists()
    assert all(path.is_dir() for path in kept)
    assert link.is_symlink()
    assert (target / "precious").is_dir()


def test_scratch_dirs_name_their_owner_for_the_sweep() -> None:
    made = scratch.make_scratch()
    egress = scratch.make_scratch("egress")
    try:
        assert scratch.owner_pid(made.name) == os.getpid()
        assert scratch.owner_pid(egress.name) == os.getpid()
        assert made.stat().st_mode & 0o777 == 0o700
    finally:
        made.rmdir()
        egress.rmdir()


def test_a_name_whose_pid_field_overflows_is_left_alone_and_the_sweep_goes_on(
    tmp_path: Path,
) -> None:
    """Anyone who can write the temp dir can plant such a name; it must not stop start-up."""
    dead = dead_pid()
    planted = tmp_path / "py-code-mode-9999999999-abc"
    planted.mkdir()
    stale = tmp_path / f"py-code-mode-{dead}-abc"
    stale.mkdir()

    swept = scratch.sweep_stale(tmp_path)

    assert swept == [stale]
    assert planted.is_dir()
    assert scratch.owner_pid(planted.name) is None


def test_a_dir_named_like_ours_but_owned_by_another_user_is_left_alone(tmp_path: Path) -> None:
    """Another user can plant our name in a shared /tmp; removing it is never ours to do."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give the planted directory another owner")
    planted = tmp_path / f"py-code-mode-{dead_pid()}-theirs"
    (planted / "data").mkdir(parents=True)
    os.chown(planted, 65534, 65534)

    assert scratch.sweep_stale(tmp_path) == []
    assert (planted / "data").is_dir()
