"""Temporary output folders of dead processes are removed by the next run, also when the dead
process is a zombie (killed, not yet reaped: a container's init may never reap it)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from speke_packager._io import _alive, remove_stale_partials


def _zombie() -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while open(f"/proc/{proc.pid}/stat", "rb").read().rsplit(b")", 1)[1][1:2] != b"Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return proc


def test_a_zombie_is_not_alive_a_running_process_is() -> None:
    assert _alive(os.getpid())
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    zombie = _zombie()
    try:
        os.kill(zombie.pid, 0)  # the kernel still knows it: the old check called it alive
        assert _alive(sleeper.pid)
        assert not _alive(zombie.pid)
    finally:
        sleeper.kill()
        sleeper.wait()
        zombie.wait()
    assert not _alive(zombie.pid)


def test_stale_partial_of_a_zombie_is_removed(tmp_path: Path) -> None:
    zombie = _zombie()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        dead = tmp_path / f".out.{zombie.pid}.abc123.partial"
        live = tmp_path / f".out.{sleeper.pid}.def456.partial"
        other = tmp_path / f".other.{zombie.pid}.ghi789.partial"
        for d in (dead, live, other):
            d.mkdir()
            (d / "seg.ts").write_bytes(b"x")
        assert remove_stale_partials(tmp_path / "out") == [dead]
        assert not dead.exists() and live.exists() and other.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
        zombie.wait()
