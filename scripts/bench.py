"""Benchmarks that print numbers (speed targets live here, never in unit tests).

    make bench                 # all
    python scripts/bench.py landmarks --images 600 --repeats 3

landmarks: the landmark stage (2 worker processes: load, mesh, align, crop, control image,
           write) next to plain single-process MediaPipe on the same SynthPain images, in one
           run, repeated; medians reported.
synthpain: seconds per rendered 128 px image, one process.
train:     seconds per fine-tuning step of stage 02 (the shipped checkpoint, batch 16, 64 px) with
           1 and 2 torch threads and OpenMP's ACTIVE / PASSIVE wait policy, on a quiet machine
           and with one competing busy process (what a laptop running anything else looks
           like); needs `dvc repro landmarks` first.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def bench_synthpain(n_images: int) -> None:
    import numpy as np

    from paincontrol_lib.data.synthpain.identity import sample_identity
    from paincontrol_lib.data.synthpain.render import default_renderer

    renderer = default_renderer()
    people = [sample_identity(renderer.model, 0, i) for i in range(8)]
    renderer.render(people[0], {})
    start = time.perf_counter()
    for k in range(n_images):
        renderer.render(people[k % 8], {"AU04": k % 6, "AU43": k % 2}, rng=np.random.default_rng(k))
    per_image = (time.perf_counter() - start) / n_images
    print(f"synthpain  render 128 px: {per_image * 1000:.1f} ms/image (one process)")


def bench_landmarks(n_identities: int, repeats: int, workers: int) -> None:
    from paincontrol_lib.data.sources import load_records
    from paincontrol_lib.data.synthpain.generate import SynthPainConfig, generate
    from paincontrol_lib.landmarks.batch import build_landmark_table, raw_mediapipe_rate

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "synthpain"
        generate(SynthPainConfig(n_identities=n_identities), data, workers=workers)
        records = load_records("synthpain", data)
        ours, raw = [], []
        for _ in range(repeats):
            _, seconds = build_landmark_table(
                records, data, Path(tmp) / "lm", workers=workers, progress=False
            )
            ours.append(len(records) / seconds)
            raw.append(raw_mediapipe_rate(records["image"]))
        ratios = [a / b for a, b in zip(ours, raw, strict=True)]

        def runs(values, fmt):
            return ", ".join(format(v, fmt) for v in values)

        print(f"landmarks  {len(records)} SynthPain images, {repeats} runs, medians:")
        print(
            f"  stage ({workers} workers, incl. control images): "
            f"{statistics.median(ours):7.1f} images/s  (runs: {runs(ours, '.0f')})"
        )
        print(
            f"  raw MediaPipe FaceMesh (1 process):        "
            f"{statistics.median(raw):7.1f} images/s  (runs: {runs(raw, '.0f')})"
        )
        print(
            f"  throughput ratio stage / raw: {statistics.median(ratios):.2f} "
            f"(runs: {runs(ratios, '.2f')})"
        )


def _burn(stop) -> None:
    """A competing process: one core kept busy until ``stop`` is set."""
    x = 0
    while not stop.is_set():
        x = (x * 31 + 7) % 1_000_003


def _train_steps(steps: int, threads: int) -> float:
    """Seconds per step of one short fine-tuning run (in this process)."""
    import json

    from paincontrol_lib.config import load_params
    from paincontrol_lib.model.train import main as train_main
    from paincontrol_lib.stages.train import train_args

    train = load_params()["train"]
    train = train | {"max_steps": steps, "checkpointing_steps": 10**6, "validation_steps": 0,
                     "threads": threads}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        train_main(train_args("data/landmarks", Path(tmp) / "run", "ours", train, 0,
                              train["init_from"]))  # fmt: skip
        record = json.loads((Path(tmp) / "run/final/training.json").read_text())
    return record["train_minutes"] * 60 / record["steps"]


def bench_train(steps: int, repeats: int) -> None:
    """Each setting in a fresh process (OpenMP reads its wait policy once, at start-up)."""
    import multiprocessing
    import os
    import subprocess
    import sys

    settings = [(1, "ACTIVE"), (2, "ACTIVE"), (2, "PASSIVE")]
    print(
        f"train      seconds per fine-tuning step ({steps} steps a run, {repeats} runs, medians):"
    )
    code = "import sys; sys.path.insert(0, 'scripts'); from bench import _train_steps; "
    for busy in (False, True):
        for threads, policy in settings:
            per_step = []
            for _ in range(repeats):
                stop = multiprocessing.Event()
                rival = multiprocessing.Process(target=_burn, args=(stop,)) if busy else None
                if rival:
                    rival.start()
                try:
                    out = subprocess.run(
                        [sys.executable, "-c", code + f"print(_train_steps({steps}, {threads}))"],
                        env=dict(os.environ, OMP_WAIT_POLICY=policy), capture_output=True,
                        text=True, check=True,
                    )  # fmt: skip
                    per_step.append(float(out.stdout.strip().splitlines()[-1]))
                finally:
                    if rival:
                        stop.set()
                        rival.join()
            load = "one busy rival" if busy else "quiet"
            print(f"  {threads} thread(s), OMP {policy:7s}, {load:14s}: "
                  f"{statistics.median(per_step):5.2f} s/step "
                  f"(runs: {', '.join(f'{v:.2f}' for v in per_step)})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("which", nargs="*", default=["synthpain", "landmarks", "train"])
    parser.add_argument("--identities", type=int, default=10, help="SynthPain people (x30 images)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if "synthpain" in args.which:
        bench_synthpain(100)
    if "landmarks" in args.which:
        bench_landmarks(args.identities, args.repeats, args.workers)
    if "train" in args.which:
        bench_train(20, args.repeats)


if __name__ == "__main__":
    main()
