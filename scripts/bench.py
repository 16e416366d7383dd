"""Benchmarks that print numbers (speed targets live here, never in unit tests).

    make bench                 # all
    python scripts/bench.py landmarks --images 600 --repeats 3

landmarks: the landmark stage (2 worker processes: load, mesh, align, crop, control image,
           write) next to plain single-process MediaPipe on the same SynthPain images, in one
           run, repeated; medians reported.
synthpain: seconds per rendered 128 px image, one process.
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("which", nargs="*", default=["synthpain", "landmarks"])
    parser.add_argument("--identities", type=int, default=10, help="SynthPain people (x30 images)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if "synthpain" in args.which:
        bench_synthpain(100)
    if "landmarks" in args.which:
        bench_landmarks(args.identities, args.repeats, args.workers)


if __name__ == "__main__":
    main()
