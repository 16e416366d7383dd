"""Stage 03 in one call: held-out source sequences x held-out target identities, every method.

Sources and targets are test-split people only (never seen in training), and no person is both
a source and a target. Each source pain sequence (neutral -> apex -> neutral) is retargeted
frame by frame onto each target's neutral face and generated with every method, one shared
seed per sequence; ``explicit`` PSPI levels are rendered on every target too. Everything lands
in one folder (written atomically) with a manifest of what was asked for.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from paincontrol_lib.landmarks import align
from paincontrol_lib.retarget import aus_for_pspi, retarget
from paincontrol_lib.transfer import METHODS, Face, Transfer, sequence_jitter

MANIFEST = "manifest.parquet"


def pick_pairs(table: pd.DataFrame, n_sources: int, n_targets: int, seed: int):
    """``(sources, targets)``: the ``n_sources`` held-out people with the strongest pain
    sequence, as ``(subject, sequence)``, and ``n_targets`` other held-out people."""
    test = table[(table["split"] == "test") & table["detected"]]
    if test.empty:
        raise ValueError("no detected held-out (test-split) faces to transfer between")
    peaks = test.groupby(["subject", "sequence"])["PSPI"].max().reset_index()
    peaks = peaks.sort_values(["PSPI", "subject", "sequence"], ascending=[False, True, True])
    sources = []
    for row in peaks.itertuples(index=False):
        if row.subject not in {s for s, _ in sources} and len(sources) < n_sources:
            sources.append((row.subject, row.sequence))
    others = sorted(set(test["subject"]) - {s for s, _ in sources})
    if len(sources) < n_sources or len(others) < n_targets:
        raise ValueError(
            f"{test['subject'].nunique()} held-out people cannot give {n_sources} sources and "
            f"{n_targets} other targets"
        )
    rng = np.random.default_rng([seed, 0x7A6])
    targets = sorted(rng.choice(others, size=n_targets, replace=False).tolist())
    return sources, targets


def mesh_of(row) -> np.ndarray:
    """A landmark-table row's MediaPipe mesh (478, 3), pixels."""
    return np.asarray(row["landmarks"], dtype=np.float64).reshape(-1, 3)


def neutral_row(table: pd.DataFrame, subject: str) -> pd.Series:
    """The person's detected neutral reference frame (a clear error when there is none)."""
    rows = table[(table["subject"] == subject) & table["neutral_reference"] & table["detected"]]
    if rows.empty:
        raise ValueError(f"{subject} has no detected neutral reference frame")
    return rows.iloc[0]


def face_of(row: pd.Series) -> Face:
    """A :class:`Face` from a landmark-table row (its stored mesh; no re-meshing)."""
    from paincontrol_lib.landmarks import load_image

    landmarks = mesh_of(row)
    aligned, transform = align(landmarks)
    return Face(load_image(row["image"]), landmarks, aligned, transform, str(row["subject"]))


def _save(folder: Path, name: str, image: np.ndarray) -> str:
    from PIL import Image

    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return name


def run_transfer_stage(table: pd.DataFrame, model, out_dir, params: dict, seed: int):
    """Generate every (source frame, target, method) and the explicit PSPI levels.

    Returns ``(manifest, metrics, panels)``; ``panels`` holds arrays for the figures.
    """
    from paincontrol_lib.io import atomic_folder

    methods = list(params["methods"])
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown transfer methods {sorted(unknown)}; expected {METHODS}")
    engine = Transfer(model, steps=params["sampling_steps"],
                      guidance_scale=params["guidance_scale"],
                      identity_scale=params["identity_scale"],
                      reference_strength=params["reference_strength"])  # fmt: skip
    size = engine.size
    sources, targets = pick_pairs(table, params["n_sources"], params["n_targets"], seed)
    target_rows = {t: neutral_row(table, t) for t in targets}
    target_faces = {t: face_of(row) for t, row in target_rows.items()}
    records, seconds, jitter = [], dict.fromkeys(methods, 0.0), {m: [] for m in methods}
    panels = {"sequences": [], "source_jitter": []}

    def generate(method, target, expressions):
        start = time.perf_counter()
        images = engine.generate(
            method, target_faces[target], expressions, seed=seed, shared_noise=True
        )
        seconds[method] += time.perf_counter() - start
        return images

    def record(method, target, expr, name, image, **source):
        return {
            "method": method, "mode": expr.mode, **source, "target": target,
            "target_image": target_rows[target]["image"], "pspi": expr.pspi, "aus": expr.aus,
            "target_aligned": expr.aligned.astype(np.float32).ravel(), "seed": seed,
            "path": _save(tmp, name, image),
        }  # fmt: skip

    with atomic_folder(out_dir) as tmp:
        for subject, sequence in sources:
            frames = table[(table["subject"] == subject) & (table["sequence"] == sequence)]
            frames = frames[frames["detected"]].sort_values("frame")
            neutral = mesh_of(neutral_row(table, subject))
            source_crops = np.stack([face_of(r).crop(size) for _, r in frames.iterrows()])
            panels["source_jitter"].append(sequence_jitter(source_crops))
            for target in targets:
                face = target_faces[target]
                expressions = [
                    retarget(params["mode"], face.landmarks, source=mesh_of(r),
                             source_neutral=neutral, size=size)
                    for _, r in frames.iterrows()
                ]  # fmt: skip
                outputs = {}
                for method in methods:
                    outputs[method] = images = generate(method, target, expressions)
                    jitter[method].append(sequence_jitter(images))
                    for (_, row), expr, image in zip(frames.iterrows(), expressions, images,
                                                     strict=True):  # fmt: skip
                        frame = int(row["frame"])
                        name = f"{method}/{subject}_{sequence}_to_{target}_f{frame:02d}.png"
                        records.append(record(
                            method, target, expr, name, image, source=subject,
                            source_sequence=sequence, source_frame=frame,
                            source_image=row["image"], frame=frame,
                            source_pspi=float(row["PSPI"]),
                        ))  # fmt: skip
                panels["sequences"].append(
                    {
                        "source": subject,
                        "target": target,
                        "source_crops": source_crops,
                        "target_crop": face.crop(size),
                        "outputs": outputs,
                        "controls": np.stack([e.control for e in expressions]),
                        "pspi": [e.pspi for e in expressions],
                    }  # fmt: skip
                )
        levels = list(params["explicit_pspi"])
        for target in targets:
            expressions = [
                retarget("explicit", target_faces[target].landmarks, aus=aus_for_pspi(level),
                         size=size)
                for level in levels
            ]  # fmt: skip
            for method in methods:
                images = generate(method, target, expressions)
                for level, expr, image in zip(levels, expressions, images, strict=True):
                    name = f"{method}/explicit_pspi{level:02d}_to_{target}.png"
                    records.append(record(
                        method, target, expr, name, image, source="explicit",
                        source_sequence=None, source_frame=None, source_image=None, frame=None,
                        source_pspi=float(level),
                    ))  # fmt: skip
        manifest = pd.DataFrame(records)
        manifest["aus"] = manifest["aus"].map(
            lambda a: json.dumps({k: round(float(v), 3) for k, v in a.items()})
        )
        manifest.to_parquet(tmp / MANIFEST)
    counts = manifest.groupby("method").size()
    metrics = {
        "mode": params["mode"],
        "n_sources": len(sources),
        "n_targets": len(targets),
        "methods": {m: {"n_outputs": int(counts.get(m, 0))} for m in methods},
        "sequence_jitter": {m: float(np.mean(jitter[m])) for m in methods},
        "source_sequence_jitter": float(np.mean(panels["source_jitter"])),
        "seconds_per_image": {m: seconds[m] / max(1, int(counts.get(m, 0))) for m in methods},
    }
    return manifest, metrics, panels


def load_manifest(out_dir) -> pd.DataFrame:
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: run the transfer stage first (dvc repro transfer)")
    return pd.read_parquet(path)
