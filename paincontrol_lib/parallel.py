"""Worker processes for the CPU-parallel steps (meshing, AU reading, scoring, detector fits).

Spawned, never forked: a forked copy of a process that has run MediaPipe corrupts its heap.
Spawned workers re-import the script that started them, so a script without an
``if __name__ == "__main__":`` guard would start workers again from each worker; Python refuses
that in the worker, and a ``multiprocessing.Pool`` then replaces the dead worker forever (a
hang). :func:`process_pool` fails fast instead, with a message that says what to change.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

UNGUARDED = (
    "worker processes could not start. A script that calls paincontrol_lib with workers > 1 "
    'must put its top-level code under `if __name__ == "__main__":` (spawned workers re-import '
    "the script), or pass workers=1"
)


def check_not_a_worker_import() -> None:
    """Refuse to start workers while a spawned worker is re-importing an unguarded script."""
    main = sys.modules.get("__main__")
    if multiprocessing.parent_process() is not None and getattr(main, "__name__", "") == (
        "__mp_main__"
    ):
        raise RuntimeError(UNGUARDED)


@contextlib.contextmanager
def process_pool(workers: int, initializer=None, initargs=()):
    """A spawned :class:`ProcessPoolExecutor` whose workers dying before they could work (an
    unguarded script, a crash in ``initializer``) raise a clear error rather than hang."""
    check_not_a_worker_import()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=initializer,
                             initargs=initargs) as pool:  # fmt: skip
        try:
            yield pool
        except BrokenProcessPool as exc:
            raise RuntimeError(f"{UNGUARDED} ({exc})") from None
