"""Stage 03 (notebook ``03_transfer``): held-out source sequences x held-out target
identities, every method.

Sources and targets are test-split people only (never seen in training), and no person is both
a source and a target. Each source pain sequence (neutral -> apex -> neutral) is retargeted
frame by frame onto each target's neutral face and generated with every method, one shared
seed per sequence; ``explicit`` PSPI levels are rendered on every target too. Everything lands
in one folder (written atomically) with a manifest of what was asked for.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from paincontrol_lib.io import atomic_folder, save_figure, save_image, write_json
from paincontrol_lib.landmarks.face import face_of
from paincontrol_lib.landmarks.table import load_landmark_table, mesh_of, neutral_row
from paincontrol_lib.model.presets import PainControlModel
from paincontrol_lib.model.sampler import tuned_sampler
from paincontrol_lib.retarget import aus_for_pspi, retarget
from paincontrol_lib.seeds import stream
from paincontrol_lib.transfer import MANIFEST, METHODS, Transfer, sequence_jitter

METRICS = "transfer.json"


@dataclass(frozen=True)
class Design:
    """Who is transferred onto whom: test people only, nobody onto themself."""

    sources: dict[str, str]  # source person -> their strongest pain sequence
    targets: list[str]  # people who receive expressions (and the explicit PSPI levels)
    pairs: list[tuple[str, str]]  # (source, target)


def plan_design(
    table: pd.DataFrame, n_sources: int, n_targets: int, targets_per_source: int, seed: int
) -> Design:
    """The ``n_sources`` test people with the strongest pain sequences, ``n_targets`` test
    people (seeded), and for each source ``targets_per_source`` targets other than itself, dealt
    so that every target receives about as many sources as every other."""
    test = table[(table["split"] == "test") & table["detected"]]
    peaks = test.groupby(["subject", "sequence"])["PSPI"].max().reset_index()
    peaks = peaks[peaks["PSPI"] > 0].sort_values(
        ["PSPI", "subject", "sequence"], ascending=[False, True, True]
    )
    strongest = peaks.drop_duplicates("subject")
    people = sorted(test["subject"].unique())
    if len(strongest) < n_sources or len(people) < n_targets or n_targets < 2:
        raise ValueError(
            f"{len(people)} test people ({len(strongest)} with a pain sequence) cannot give "
            f"{n_sources} sources and {n_targets} targets (at least 2)"
        )
    if not 1 <= targets_per_source < n_targets:
        raise ValueError(f"targets_per_source must be in [1, {n_targets - 1}]")
    sources = dict(
        zip(strongest["subject"][:n_sources], strongest["sequence"][:n_sources], strict=True)
    )
    targets = sorted(stream("transfer_targets", seed).choice(people, n_targets, replace=False))
    received = dict.fromkeys(targets, 0)
    pairs = []
    for source in sorted(sources):
        open_ = sorted((t for t in targets if t != source), key=lambda t: (received[t], t))
        for target in open_[:targets_per_source]:
            received[target] += 1
            pairs.append((source, target))
    return Design(sources, [str(t) for t in targets], _balance(pairs, received))


def _balance(pairs: list, received: dict) -> list:
    """Move pairs from the most- to the least-served target until their counts differ by at
    most one (the greedy deal can end unbalanced when a source may not receive itself)."""
    pairs = list(pairs)
    for _ in range(len(pairs) * len(received)):
        high = max(received, key=lambda t: (received[t], t))
        low = min(received, key=lambda t: (received[t], t))
        if received[high] - received[low] <= 1:
            break
        movable = [i for i, (s, t) in enumerate(pairs)
                   if t == high and s != low and (s, low) not in pairs]  # fmt: skip
        if not movable:
            break
        source = pairs[movable[0]][0]
        pairs[movable[0]] = (source, low)
        received[high], received[low] = received[high] - 1, received[low] + 1
    return sorted(pairs)


def frames_across_pspi(frames: pd.DataFrame, k: int) -> pd.DataFrame:
    """``k`` frames of a sequence spread over its PSPI levels (neutral to apex), in time order."""
    ranked = frames.sort_values(["PSPI", "frame"], kind="stable")
    picks = np.unique(np.linspace(0, len(ranked) - 1, min(k, len(ranked))).round().astype(int))
    return ranked.iloc[picks].sort_values("frame")


@dataclass
class TransferResult:
    manifest: pd.DataFrame  # one row per generated image: what was asked for, and where it is
    metrics: dict  # reports/metrics/transfer.json
    panels: dict  # arrays for the figures


@dataclass
class _Outputs:
    """What the stage collects while it generates: manifest rows, timings, jitter, panels."""

    engine: Transfer
    folder: Path
    seed: int
    records: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    jitter: dict = field(default_factory=dict)
    panels: dict = field(default_factory=lambda: {"sequences": [], "source_jitter": []})

    def generate(self, method, target: str, face, expressions) -> np.ndarray:
        start = time.perf_counter()
        images = self.engine.generate(method, face, expressions, seed=self.seed, shared_noise=True)
        self.seconds[method] = self.seconds.get(method, 0.0) + time.perf_counter() - start
        return images

    def record(self, method, target_row, expr, name, image, **source) -> None:
        save_image(self.folder / name, image)
        self.records.append(
            {
                "method": method,
                "mode": expr.mode,
                **source,
                "target": str(target_row["subject"]),
                "target_image": target_row["image"],
                "pspi": expr.pspi,
                "aus": expr.aus,
                "target_aligned": expr.aligned.astype(np.float32).ravel(),
                "seed": self.seed,
                "path": name,
            }
        )


def run(
    base: dict, transfer: dict, sampler: dict, tuning, landmarks_dir, out_dir, reports_dir
) -> TransferResult:
    """Generate every (source frame, target, method) and the explicit PSPI levels into
    ``out_dir`` (replaced atomically, with its manifest) and write ``transfer.json``. Model
    methods are drawn with the sampler stage 02 chose on validation people (``tuning``: its
    ``tuning.json``)."""
    started = time.perf_counter()
    methods = list(transfer["methods"])
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown transfer methods {sorted(unknown)}; expected {METHODS}")
    table = load_landmark_table(landmarks_dir)
    model = PainControlModel.from_pretrained(transfer["checkpoint"])
    engine = Transfer(model, tuned_sampler(sampler, tuning))
    design = plan_design(
        table,
        transfer["n_sources"],
        transfer["n_targets"],
        transfer["targets_per_source"],
        base["seed"],
    )
    # target -> (its neutral row, its face): each face embedded once, reused by every call
    target_faces = {
        t: (row, face_of(row)) for t in design.targets for row in [neutral_row(table, t)]
    }
    with atomic_folder(out_dir) as tmp:
        out = _Outputs(engine, tmp, base["seed"])
        for subject, sequence in design.sources.items():
            receivers = {t: target_faces[t] for s, t in design.pairs if s == subject}
            _transfer_sequence(out, table, subject, sequence, receivers, methods, transfer)
        _explicit_levels(out, target_faces, methods, list(transfer["explicit_pspi"]))
        manifest = pd.DataFrame(out.records)
        manifest["aus"] = manifest["aus"].map(
            lambda a: json.dumps({k: round(float(v), 3) for k, v in a.items()})
        )
        manifest.to_parquet(tmp / MANIFEST)
    counts = manifest.groupby("method").size()
    metrics = {
        "mode": transfer["mode"],
        "n_sources": len(design.sources),
        "n_targets": len(design.targets),
        "n_pairs": len(design.pairs),
        "frames_per_pair": transfer["frames_per_pair"],
        "sampler": engine.sampler.as_dict(),
        "methods": {m: {"n_outputs": int(counts.get(m, 0))} for m in methods},
        "sequence_jitter": {m: float(np.mean(out.jitter[m])) for m in methods},
        "source_sequence_jitter": float(np.mean(out.panels["source_jitter"])),
        "per_image_seconds": {
            m: out.seconds.get(m, 0.0) / max(1, int(counts.get(m, 0))) for m in methods
        },
    }
    metrics["seconds"] = time.perf_counter() - started
    write_json(Path(reports_dir) / "metrics" / METRICS, metrics)
    return TransferResult(manifest, metrics, out.panels)


def _transfer_sequence(out: _Outputs, table, subject, sequence, target_faces, methods, transfer):
    """One source sequence (``frames_per_pair`` frames across its PSPI levels, in time order)
    onto each of its targets, with every method."""
    size, mode = out.engine.size, transfer["mode"]
    frames = table[(table["subject"] == subject) & (table["sequence"] == sequence)]
    frames = frames_across_pspi(frames[frames["detected"]], transfer["frames_per_pair"])
    neutral = mesh_of(neutral_row(table, subject))
    source_crops = np.stack([face_of(r).crop(size) for _, r in frames.iterrows()])
    out.panels["source_jitter"].append(sequence_jitter(source_crops))
    for target, (target_row, face) in target_faces.items():
        expressions = [
            retarget(mode, face.landmarks, source=mesh_of(r), source_neutral=neutral, size=size)
            for _, r in frames.iterrows()
        ]
        outputs = {}
        for method in methods:
            outputs[method] = images = out.generate(method, target, face, expressions)
            out.jitter.setdefault(method, []).append(sequence_jitter(images))
            for (_, row), expr, image in zip(frames.iterrows(), expressions, images, strict=True):
                frame = int(row["frame"])
                name = f"{method}/{subject}_{sequence}_to_{target}_f{frame:02d}.png"
                out.record(
                    method,
                    target_row,
                    expr,
                    name,
                    image,
                    source=subject,
                    source_sequence=sequence,
                    source_frame=frame,
                    source_image=row["image"],
                    frame=frame,
                    source_pspi=float(row["PSPI"]),
                )
        out.panels["sequences"].append(
            {
                "source": subject,
                "target": target,
                "source_crops": source_crops,
                "target_crop": face.crop(size),
                "outputs": outputs,
                "controls": np.stack([e.control for e in expressions]),
                "pspi": [e.pspi for e in expressions],
            }
        )


def _explicit_levels(out: _Outputs, target_faces, methods, levels):
    """PSPI levels asked for directly (no source face) on every target, with every method."""
    for target, (target_row, face) in target_faces.items():
        expressions = [
            retarget("explicit", face.landmarks, aus=aus_for_pspi(level), size=out.engine.size)
            for level in levels
        ]
        for method in methods:
            images = out.generate(method, target, face, expressions)
            for level, expr, image in zip(levels, expressions, images, strict=True):
                name = f"{method}/explicit_pspi{level:02d}_to_{target}.png"
                out.record(
                    method,
                    target_row,
                    expr,
                    name,
                    image,
                    source="explicit",
                    source_sequence=None,
                    source_frame=None,
                    source_image=None,
                    frame=None,
                    source_pspi=float(level),
                )


def apex_grid_figure(result: TransferResult, figures_dir):
    """Each (source, target) pair at the source's strongest frame: source | target neutral |
    control | each method."""
    import matplotlib.pyplot as plt

    methods = list(result.metrics["methods"])
    rows = []
    for panel in result.panels["sequences"]:
        apex = int(np.argmax(panel["pspi"]))
        row = [panel["source_crops"][apex], panel["target_crop"], panel["controls"][apex]]
        row += [panel["outputs"][m][apex] for m in methods]
        rows.append(np.concatenate(row, axis=1))
    grid = np.concatenate(rows, axis=0)
    fig, ax = plt.subplots(figsize=(1.6 * (3 + len(methods)), 1.6 * len(rows)))
    ax.imshow(grid)
    ax.set_title("source apex | target neutral | control | " + " | ".join(methods), fontsize=9)
    ax.axis("off")
    save_figure(fig, Path(figures_dir) / "transfer_grid.png")
    return fig


def sequence_figure(result: TransferResult, figures_dir):
    """The first sequence frame by frame: source, controls, then each method."""
    import matplotlib.pyplot as plt

    methods = list(result.metrics["methods"])
    panel = result.panels["sequences"][0]
    lines = [panel["source_crops"], panel["controls"]] + [panel["outputs"][m] for m in methods]
    strip = np.concatenate([np.concatenate(list(frames), axis=1) for frames in lines], axis=0)
    fig, ax = plt.subplots(figsize=(1.2 * len(panel["pspi"]), 1.2 * len(lines)))
    ax.imshow(strip)
    ax.set_title(
        f"{panel['source']} -> {panel['target']}: source | control | " + " | ".join(methods),
        fontsize=9,
    )
    ax.axis("off")
    save_figure(fig, Path(figures_dir) / "transfer_sequence.png")
    return fig


def explicit_figure(result: TransferResult, out_dir, figures_dir):
    """The explicit PSPI levels on the first target, one row per method."""
    import matplotlib.pyplot as plt
    from PIL import Image

    methods = list(result.metrics["methods"])
    explicit = result.manifest[result.manifest["mode"] == "explicit"]
    explicit = explicit[explicit["target"] == explicit["target"].iloc[0]]
    levels = sorted(explicit["pspi"].unique())
    fig, axes = plt.subplots(
        len(methods), len(levels), figsize=(1.3 * len(levels), 1.3 * len(methods)), squeeze=False
    )
    for i, method in enumerate(methods):
        for j, level in enumerate(levels):
            pick = explicit[(explicit["method"] == method) & (explicit["pspi"] == level)]
            axes[i, j].imshow(Image.open(Path(out_dir) / pick["path"].iloc[0]))
            axes[i, j].set_xticks([]), axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(f"PSPI {level:g}", fontsize=8)
        axes[i, 0].set_ylabel(method, fontsize=8)
    fig.tight_layout()
    save_figure(fig, Path(figures_dir) / "transfer_explicit.png")
    return fig
