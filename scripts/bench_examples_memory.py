"""Host memory of prepared training examples at 512 px, per frame: measured, not estimated.

    python scripts/bench_examples_memory.py                      # 3000 frames now, 300 before
    python scripts/bench_examples_memory.py --frames 1000 --size 256

Each layout is measured in its own process (the peak resident set, ``ru_maxrss``, is a
process's): the growth of the resident set over the process before the examples, divided by
the frames. Frames are synthetic (random uint8 faces and control images, a constant mask): what
is measured is the storage, not the rendering.

- ``uint8`` (now): ``model/data.py: store_frames``, what ``prepare_examples`` stores through;
- ``float32`` (before): the former eager conversion (every frame a float32 tensor in a list,
  stacked at the end); fewer frames by default, since 3000 of them need about 44 GB at the peak.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import numpy as np


def _frames(n: int, size: int):
    """``n`` synthetic ``(crop, control, mask)`` of ``size`` px, made one at a time."""
    rng = np.random.default_rng(0)
    mask = np.full((size, size), 0.5, dtype=np.float32)
    for _ in range(n):
        yield (rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
               rng.integers(0, 256, (size, size, 3), dtype=np.uint8), mask)  # fmt: skip


def _rss_bytes() -> int:
    """The resident set now (``/proc/self/statm``: pages)."""
    import os

    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _store_uint8(n: int, size: int) -> int:
    from paincontrol_lib.model.data import store_frames

    images, controls, masks = store_frames(_frames(n, size), n, size)
    return images.pixels.nbytes + controls.pixels.nbytes + masks.nbytes


def _store_float32(n: int, size: int) -> int:
    import torch

    images, controls, masks = [], [], []
    for crop, control, mask in _frames(n, size):
        images.append(torch.from_numpy(crop).permute(2, 0, 1).float() / 127.5 - 1)
        controls.append(torch.from_numpy(control).permute(2, 0, 1).float() / 255)
        masks.append(torch.from_numpy(mask.copy())[None])
    held = (torch.stack(images), torch.stack(controls), torch.stack(masks))
    return sum(t.nbytes for t in held)


def measure(layout: str, n: int, size: int) -> dict:
    """Held bytes (the tensors) and peak resident growth, per frame, in this process."""
    import torch  # noqa: F401  (imported before the baseline: its libraries are no example's)

    import paincontrol_lib.model.data  # noqa: F401

    before = _rss_bytes()
    held = {"uint8": _store_uint8, "float32": _store_float32}[layout](n, size)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {"layout": layout, "frames": n, "size": size, "held_per_frame": held / n,
            "peak_growth_per_frame": (peak - before) / n, "peak_growth": peak - before}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=3000, help="frames stored as uint8")
    parser.add_argument("--float-frames", type=int, default=300, help="frames stored as float32")
    parser.add_argument("--size", type=int, default=512, help="px")
    parser.add_argument("--layout", choices=["uint8", "float32"], help="measure one, here")
    args = parser.parse_args()
    if args.layout:
        frames = args.frames if args.layout == "uint8" else args.float_frames
        print(json.dumps(measure(args.layout, frames, args.size)))
        return
    print(f"prepared examples at {args.size} px, host memory per frame (MB = 10^6 bytes):")
    for layout, label in (("float32", "before: float32 faces, controls, masks"),
                          ("uint8", "now: uint8 faces and controls, float32 masks")):  # fmt: skip
        out = subprocess.run(
            [sys.executable, __file__, "--layout", layout, "--frames", str(args.frames),
             "--float-frames", str(args.float_frames), "--size", str(args.size)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        r = json.loads(out.strip().splitlines()[-1])
        print(f"  {label:46s} {r['frames']:5d} frames: held {r['held_per_frame'] / 1e6:5.2f}, "
              f"peak resident growth {r['peak_growth_per_frame'] / 1e6:5.2f} "
              f"({r['peak_growth'] / 1e9:.2f} GB in all)")  # fmt: skip


if __name__ == "__main__":
    main()
