"""Stage 02 in one call: fine-tune the shipped checkpoint (the default), optionally train our
recipe and the reference recipe from scratch at the same CPU time, and score every run on
held-out identities (final models and along training)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

# Runs of the stage: name -> (recipe, starts from the shipped checkpoint?)
RUNS = {"ours": ("ours", True), "scratch": ("ours", False), "reference": ("reference", False)}


def train_args(
    landmarks_dir, output_dir, recipe: str, minutes: float, train: dict, seed: int,
    init_from: str | None = None,
):  # fmt: skip
    from paincontrol_lib.model.train import parse_args

    rate = train["finetune_learning_rate"] if init_from else train["learning_rate"]
    argv = [
        "--landmarks_dir", str(landmarks_dir), "--output_dir", str(output_dir),
        "--recipe", recipe, "--max_minutes", str(minutes), "--seed", str(seed),
        "--max_steps", str(train["max_steps"]), "--train_batch_size", str(train["batch_size"]),
        "--learning_rate", str(rate), "--resolution", str(train["resolution"]),
        "--checkpointing_steps", str(train["checkpointing_steps"]),
        "--checkpoints_total_limit", str(train["checkpoints_total_limit"]),
        "--validation_steps", str(train["validation_steps"]),
        "--resume_from_checkpoint", "latest", "--no-progress",
        "--identity_cache_dir", str(Path(output_dir).parent / "identity_cache"),
        "--block_out_channels", *[str(c) for c in train["block_out_channels"]],
    ] + (["--init_from", str(init_from)] if init_from else [])  # fmt: skip
    return parse_args(argv)


def checkpoint_curve(
    output_dir: Path, examples, rows, steps: int, seed: int, start=None
) -> pd.DataFrame:
    """Held-out scores of every kept checkpoint against the CPU minutes it had trained
    (``start``: the model the run began from, scored at minute 0)."""
    import json

    from paincontrol_lib.model.heldout import evaluate_model
    from paincontrol_lib.model.presets import PainControlModel
    from paincontrol_lib.model.train import _checkpoints

    points = [(0, 0.0, start)] if start is not None else []
    for ckpt in _checkpoints(output_dir):
        state = json.loads((ckpt / "training_state.json").read_text())
        points.append((state["step"], state["seconds"] / 60, ckpt / "model"))
    records = []
    for step, minutes, path in points:
        model = PainControlModel.from_pretrained(path)
        scores, _ = evaluate_model(model, examples, rows, seed=seed, steps=steps)
        records.append(
            {
                "step": step,
                "minutes": minutes,
                "nme": scores["nme"],
                "detection_rate": scores["detection_rate"],
            }
        )
    return pd.DataFrame(records)


def minutes_to_reach(curve: pd.DataFrame, target: float | None) -> float | None:
    """First CPU minute at which a curve's held-out NME is at or below ``target``."""
    if target is None or curve.empty:
        return None
    hit = curve[curve["nme"].notna() & (curve["nme"] <= target)]
    return float(hit["minutes"].min()) if len(hit) else None


def _summary(scores: dict, result: dict) -> dict:
    return {
        "steps": result["steps"],
        "train_minutes": result["train_minutes"],
        "heldout_detection_rate": scores["detection_rate"],
        "heldout_nme": scores["nme"],
        "heldout_nme_shuffled": scores["nme_shuffled"],
        "heldout_tracking_corr": scores["tracking_corr"],
        "heldout_tracking_slope": scores["tracking_slope"],
        "heldout_identity_top1": scores["identity_top1"],
        "heldout_identity_top1_other_reference": scores.get("identity_top1_other_reference"),
    }


def _provenance(init_from: str | None) -> dict | None:
    import json

    path = Path(init_from or "") / "PROVENANCE.json"
    if not init_from or not path.is_file():
        return None
    record = json.loads(path.read_text())
    runs = record["training_runs"]
    return {
        "path": str(init_from),
        "code_revision": record["code_revision"],
        "devices": sorted({r["device"] for r in runs}),
        "steps": sum(r["steps"] for r in runs),
        "train_minutes": sum(r["train_minutes"] for r in runs),
        "n_identities": record["prepared"]["n_train_subjects"],
    }


def run_stage(landmarks_dir, models_dir, train: dict, evaluation: dict, seed: int) -> dict:
    """Train, evaluate, and return the metrics of ``reports/metrics/train.json`` (plus frames
    for the figures under ``_curves`` and ``_samples``).

    Top-level metrics are the default run (``ours``: the shipped checkpoint fine-tuned for
    ``max_minutes``, or from scratch when ``init_from`` is empty) sampled as transfer samples
    (from the person's noised neutral photo, ``evaluation["reference_strength"]``, identity
    tokens scaled by ``evaluation["identity_scale"]``). ``noise_start`` is the same model from
    pure noise at identity scale 1: the model alone, sampled like ``from_scratch`` and
    ``reference_recipe`` (our recipe and the plain recipe from random weights at the same CPU
    time, when ``compare_from_scratch`` is on), so that race measures training, not sampling."""
    from paincontrol_lib.model.heldout import (
        evaluate_model,
        ground_truth_images,
        pick_rows,
        score_images,
    )
    from paincontrol_lib.model.presets import PainControlModel
    from paincontrol_lib.model.train import load_training_examples, main

    models_dir = Path(models_dir)
    init_from = train.get("init_from") or None
    if init_from and not Path(init_from).is_dir():
        raise FileNotFoundError(f"train.init_from={init_from}: no such checkpoint folder")
    names = ["ours"]
    if train["compare_from_scratch"]:
        names += ["scratch", "reference"] if init_from else ["reference"]
    results, curves, samples, scores = {}, {}, {}, {}
    for name in names:
        recipe, pretrained = RUNS[name]
        start = init_from if pretrained else None
        args = train_args(
            landmarks_dir, models_dir / name, recipe, train["max_minutes"], train, seed, start
        )
        began = time.perf_counter()
        results[name] = main(args) | {"wall_minutes": (time.perf_counter() - began) / 60}
    held_out = load_training_examples(args, split="test")
    rows = pick_rows(held_out, evaluation["n_samples"], seed)
    curve_rows = rows[: evaluation["curve_samples"]]
    steps = evaluation["sampling_steps"]
    sampler = {k: evaluation[k] for k in ("identity_scale", "reference_strength")}
    for name in names:
        model = PainControlModel.from_pretrained(models_dir / name / "final")
        scores[name], samples[name] = evaluate_model(
            model, held_out, rows, seed=seed, steps=steps, **(sampler if name == "ours" else {})
        )
        if name == "ours":
            scores["noise_start"], samples["noise_start"] = evaluate_model(
                model, held_out, rows, seed=seed, steps=steps
            )
        start = init_from if RUNS[name][1] else None
        curves[name] = checkpoint_curve(models_dir / name, held_out, curve_rows, steps, seed, start)
    ceiling = score_images(ground_truth_images(held_out, rows), held_out, rows)
    metrics = _summary(scores["ours"], results["ours"]) | {
        "sampler": {"steps": steps} | sampler,
        "noise_start": _summary(scores["noise_start"], results["ours"]),
        "init_from": _provenance(init_from),
        "identity_top1_ceiling": ceiling["identity_top1"],
        "identity_top1_other_reference_ceiling": ceiling.get("identity_top1_other_reference"),
        "ground_truth_ceiling": ceiling,
        "n_heldout_samples": scores["ours"]["n_samples"],
        "n_heldout_identities": scores["ours"].get("n_identities"),
    }
    if "scratch" in scores:
        metrics["from_scratch"] = _summary(scores["scratch"], results["scratch"])
    if "reference" in scores:
        metrics["reference_recipe"] = _summary(scores["reference"], results["reference"])
        metrics["reference_minutes"] = results["reference"]["train_minutes"]
        final_ref = curves["reference"]["nme"].dropna()
        target = float(final_ref.iloc[-1]) if len(final_ref) else None
        # Our recipe against the reference from the same (random) start: a fair race.
        ours_scratch = curves["scratch" if "scratch" in curves else "ours"]
        metrics["minutes_to_reference_nme"] = minutes_to_reach(ours_scratch, target)
    metrics["_curves"] = curves
    metrics["_samples"] = (rows, samples, held_out)
    return metrics


def grid(held_out, rows: np.ndarray, samples: dict[str, np.ndarray], n: int = 8) -> np.ndarray:
    """Rows of control | identity reference | ground truth | sample of each recipe."""
    from paincontrol_lib.model.heldout import ground_truth_images, reference_images

    pick = np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(int)
    lines = []
    for j in pick:
        i = rows[j]
        ref = reference_images(held_out, [held_out.table["subject"].iloc[i]])[0]
        parts = [
            (held_out.controls[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8),
            ((ref.permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8),
            ground_truth_images(held_out, np.array([i]))[0],
        ] + [images[j] for images in samples.values()]
        lines.append(np.concatenate(parts, axis=1))
    return np.concatenate(lines, axis=0)
