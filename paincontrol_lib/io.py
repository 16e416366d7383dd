"""Small, safe file helpers: atomic writes so an interrupted run never leaves half a file.

A write goes to a temporary sibling first, named ``.<name>.<host>-<pid>-<random>`` (a folder:
``.<name>-<host>-<pid>-<random>``), then is renamed into place. A run killed outright (``kill
-9``) cannot remove its own; the next write of the same path removes the temporaries of
``<name>`` whose process is gone on this host (a live process keeps its own; a reused pid only
keeps a stale one longer).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np


def _clean(value):
    """JSON-ready copy: numpy scalars to Python, NaN/inf to None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())  # no "-": names split on it


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _temporary_prefix(parent: Path, prefix: str) -> str:
    """``prefix`` with this process's host and pid, after removing the temporaries under
    ``prefix`` in ``parent`` that a process gone from this host left (module docstring)."""
    for entry in os.scandir(parent):
        owner = entry.name[len(prefix) :].split("-") if entry.name.startswith(prefix) else []
        if (
            len(owner) == 3
            and owner[0] == HOST
            and owner[1].isdigit()
            and not _alive(int(owner[1]))
        ):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                Path(entry.path).unlink(missing_ok=True)
    return f"{prefix}{HOST}-{os.getpid()}-"


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=_temporary_prefix(path.parent, f".{path.name}."), dir=path.parent
    )
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, payload: dict) -> Path:
    """Atomically write ``payload`` as indented JSON (NaN written as null)."""
    text = json.dumps(_clean(payload), indent=2, sort_keys=False) + "\n"
    return atomic_write_bytes(path, text.encode())


# Metrics keys that measure this machine's speed, not the method: a key named ``seconds`` or
# ending in ``_seconds``, ``_minutes`` or ``_per_second``, or starting with ``throughput`` (a ratio
# of two speeds). Everything else in reports/metrics must be the same on any machine.
TIMING_SUFFIXES = ("_seconds", "_minutes", "_per_second")


def is_timing_key(key: str) -> bool:
    return key == "seconds" or key.endswith(TIMING_SUFFIXES) or key.startswith("throughput")


def without_timings(value):
    """A metrics payload with every timing key (:func:`is_timing_key`) removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if not is_timing_key(str(k))}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


class PhaseClock:
    """Wall seconds of a stage's phases, for its metrics' ``phase_seconds`` (a timing key): the
    per-phase profile that says where a stage's time goes (README.md, "What runs and how long")."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str):
        import time

        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start


def save_figure(fig, path: str | Path, dpi: int = 200) -> Path:
    """Save a matplotlib figure atomically as PNG (``dpi``) and, beside it, as PDF (vector
    lines and text; images embedded) for print. Both carry no date, so a rerun that draws the
    same figure writes the same bytes."""
    import io

    path = Path(path)
    for suffix, metadata in ((".pdf", {"CreationDate": None}), (".png", {})):
        buf = io.BytesIO()
        fig.savefig(buf, format=suffix[1:], dpi=dpi, bbox_inches="tight", metadata=metadata)
        atomic_write_bytes(path.with_suffix(suffix), buf.getvalue())
    return path


def save_image(path: str | Path, image: np.ndarray) -> Path:
    """Save an RGB uint8 array atomically as PNG."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    return atomic_write_bytes(path, buf.getvalue())


@contextlib.contextmanager
def atomic_folder(path: str | Path):
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` whole, on any
    error it is removed and ``path`` is left as it was (a killed run's: module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(
        tempfile.mkdtemp(prefix=_temporary_prefix(path.parent, f".{path.name}-"), dir=path.parent)
    )
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file, read in chunks (packed datasets can be tens of MB)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
