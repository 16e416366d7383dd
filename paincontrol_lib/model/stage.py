"""Stage 02 in one call: train our recipe, optionally the reference recipe at equal CPU time,
and score both on held-out identities (final checkpoints and along training)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd


def train_args(landmarks_dir, output_dir, recipe: str, minutes: float, train: dict, seed: int):
    from paincontrol_lib.model.train import parse_args

    argv = [
        "--landmarks_dir", str(landmarks_dir), "--output_dir", str(output_dir),
        "--recipe", recipe, "--max_minutes", str(minutes), "--seed", str(seed),
        "--max_steps", str(train["max_steps"]), "--train_batch_size", str(train["batch_size"]),
        "--learning_rate", str(train["learning_rate"]), "--resolution", str(train["resolution"]),
        "--checkpointing_steps", str(train["checkpointing_steps"]),
        "--checkpoints_total_limit", str(train["checkpoints_total_limit"]),
        "--validation_steps", str(train["validation_steps"]),
        "--resume_from_checkpoint", "latest", "--no-progress",
        "--identity_cache_dir", str(Path(output_dir).parent / "identity_cache"),
        "--block_out_channels", *[str(c) for c in train["block_out_channels"]],
    ]  # fmt: skip
    return parse_args(argv)


def checkpoint_curve(output_dir: Path, examples, rows, steps: int, seed: int) -> pd.DataFrame:
    """Held-out scores of every kept checkpoint, against the CPU minutes it had trained."""
    import json

    from paincontrol_lib.model.heldout import evaluate_model
    from paincontrol_lib.model.presets import PainControlModel
    from paincontrol_lib.model.train import _checkpoints

    records = []
    for ckpt in _checkpoints(output_dir):
        state = json.loads((ckpt / "training_state.json").read_text())
        model = PainControlModel.from_pretrained(ckpt / "model")
        scores, _ = evaluate_model(model, examples, rows, seed=seed, steps=steps)
        records.append(
            {
                "step": state["step"],
                "minutes": state["seconds"] / 60,
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


def run_stage(landmarks_dir, models_dir, train: dict, evaluation: dict, seed: int) -> dict:
    """Train, evaluate, and return the metrics of ``reports/metrics/train.json`` (plus frames
    for the figures under ``_curves`` and ``_samples``)."""
    from paincontrol_lib.model.heldout import (
        evaluate_model,
        ground_truth_images,
        pick_rows,
        score_images,
    )
    from paincontrol_lib.model.presets import PainControlModel
    from paincontrol_lib.model.train import load_training_examples, main

    models_dir = Path(models_dir)
    recipes = ["ours"] + (["reference"] if train["compare_reference"] else [])
    results, curves, samples = {}, {}, {}
    for recipe in recipes:
        args = train_args(
            landmarks_dir, models_dir / recipe, recipe, train["max_minutes"], train, seed
        )
        start = time.perf_counter()
        results[recipe] = main(args) | {"wall_minutes": (time.perf_counter() - start) / 60}
    held_out = load_training_examples(args, split="test")
    rows = pick_rows(held_out, evaluation["n_samples"], seed)
    curve_rows = rows[: evaluation["curve_samples"]]
    scores = {}
    for recipe in recipes:
        model = PainControlModel.from_pretrained(models_dir / recipe / "final")
        scores[recipe], samples[recipe] = evaluate_model(
            model, held_out, rows, seed=seed, steps=evaluation["sampling_steps"]
        )
        curves[recipe] = checkpoint_curve(
            models_dir / recipe, held_out, curve_rows, evaluation["sampling_steps"], seed
        )
    ceiling = score_images(ground_truth_images(held_out, rows), held_out, rows)
    ours = scores["ours"]
    metrics = {
        "steps": results["ours"]["steps"],
        "train_minutes": results["ours"]["train_minutes"],
        "heldout_detection_rate": ours["detection_rate"],
        "heldout_nme": ours["nme"],
        "heldout_nme_shuffled": ours["nme_shuffled"],
        "heldout_tracking_corr": ours["tracking_corr"],
        "heldout_identity_top1": ours["identity_top1"],
        "identity_top1_ceiling": ceiling["identity_top1"],
        "ground_truth_ceiling": ceiling,
        "n_heldout_samples": ours["n_samples"],
        "n_heldout_identities": ours.get("n_identities"),
    }
    if "reference" in scores:
        ref = scores["reference"]
        metrics["reference_recipe"] = {
            "steps": results["reference"]["steps"],
            "heldout_detection_rate": ref["detection_rate"],
            "heldout_nme": ref["nme"],
            "heldout_nme_shuffled": ref["nme_shuffled"],
            "heldout_tracking_corr": ref["tracking_corr"],
            "heldout_identity_top1": ref["identity_top1"],
        }
        metrics["reference_minutes"] = results["reference"]["train_minutes"]
        final_ref = curves["reference"]["nme"].dropna()
        target = float(final_ref.iloc[-1]) if len(final_ref) else None
        metrics["minutes_to_reference_nme"] = minutes_to_reach(curves["ours"], target)
    metrics["_curves"] = curves
    metrics["_samples"] = (rows, samples, held_out)
    return metrics


def grid(held_out, rows: np.ndarray, samples: dict[str, np.ndarray], n: int = 8) -> np.ndarray:
    """Rows of control | identity reference | ground truth | sample of each recipe."""
    from paincontrol_lib.model.heldout import ground_truth_images

    pick = np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(int)
    keys = list(held_out.table["key"])
    lines = []
    for j in pick:
        i = rows[j]
        subject = held_out.table["subject"].iloc[i]
        ref = held_out.images[keys.index(held_out.reference_keys[subject][0])]
        parts = [
            (held_out.controls[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8),
            ((ref.permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8),
            ground_truth_images(held_out, np.array([i]))[0],
        ] + [images[j] for images in samples.values()]
        lines.append(np.concatenate(parts, axis=1))
    return np.concatenate(lines, axis=0)
