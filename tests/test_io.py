"""Atomic writes: a run killed outright (kill -9) leaves its temporary sibling behind, and the
next write of the same path removes it, never one that a live process is still filling."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from paincontrol_lib.io import atomic_folder, atomic_write_bytes

# Starts an atomic write of sys.argv[1] (a folder, or a file when sys.argv[2] == "file"), says
# so, and waits inside it until killed.
WRITER = """
import sys, time
from pathlib import Path
from paincontrol_lib import io

target = Path(sys.argv[1])
if sys.argv[2] == "file":
    io.os.fsync = lambda fd: (print("ready", flush=True), time.sleep(600))
    io.atomic_write_bytes(target, b"half")
else:
    with io.atomic_folder(target) as tmp:
        (tmp / "half.png").write_bytes(b"half")
        print("ready", flush=True)
        time.sleep(600)
"""


def start_writer(target, kind):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), kind],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline() == "ready\n"
    return proc


def killed_writer(target, kind):
    """What ``kill -9`` in the middle of writing ``target`` leaves beside it."""
    before = set(target.parent.iterdir())
    proc = start_writer(target, kind)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (left,) = set(target.parent.iterdir()) - before
    return left


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_a_killed_runs_temporary_is_removed_by_the_next_write_and_a_live_ones_kept(tmp_path, kind):
    target = tmp_path / "transfer"
    dead = killed_writer(target, kind)
    assert dead.name.startswith(".transfer")
    live = start_writer(target, kind)
    try:
        (running,) = set(tmp_path.iterdir()) - {dead}
        if kind == "folder":
            with atomic_folder(target) as tmp:
                (tmp / "done.png").write_bytes(b"whole")
        else:
            atomic_write_bytes(target, b"whole")
        assert not dead.exists(), "the killed run's temporary survived the next write"
        assert running.exists(), "a live writer's temporary was removed"
        assert set(tmp_path.iterdir()) == {target, running}
    finally:
        live.kill()
        live.wait()
