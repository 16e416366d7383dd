"""Stage 04 (notebook ``04_au_identity``): score every transfer output — AU transfer (AU4 and
AU43 called out), landmark following, identity, source leakage, realism and, on SynthPain, the
distance to the exact answer — summarise with CIs, compare with the warp baseline, and validate
the AU estimator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from paincontrol_lib.au import validate_mesh_estimator
from paincontrol_lib.evaluate import (
    ExactAnswers,
    compare_methods,
    mixed_model,
    real_embeddings,
    realism_distances,
    requested_aus,
    score_outputs,
    summarise,
)
from paincontrol_lib.facs import PAIN_AUS
from paincontrol_lib.io import atomic_write_bytes, save_figure, write_json
from paincontrol_lib.landmarks.image import load_image
from paincontrol_lib.landmarks.table import load_landmark_table
from paincontrol_lib.transfer import load_manifest

METRICS = "eval.json"
AU_ERROR_PLOT = "eval_au_error.csv"


@dataclass
class EvaluateResult:
    table: pd.DataFrame  # the landmark table
    manifest: pd.DataFrame  # stage 03's manifest
    scores: pd.DataFrame  # one row per output
    summary: pd.DataFrame  # per method and metric: mean, CI, n
    paired: pd.DataFrame  # paired tests against the warp
    mixed: pd.DataFrame | None  # mixed model of PSPI error
    estimator: pd.DataFrame  # the AU estimator's validation
    metrics: dict  # reports/metrics/eval.json
    exact: ExactAnswers | None  # SynthPain's exact answers (None on real data)


def run(
    base: dict, data: dict, evaluate: dict, landmarks_dir, transfer_dir, reports_dir
) -> EvaluateResult:
    """Score, summarise and compare every output; write ``eval.json`` and the per-AU plot data."""
    seed = base["seed"]
    table, manifest = load_landmark_table(landmarks_dir), load_manifest(transfer_dir)
    synthpain_dir = Path(data["root"]) if data["source"] == "synthpain" else None
    exact = None
    if synthpain_dir is not None and (synthpain_dir / "config.json").is_file():
        exact = ExactAnswers(synthpain_dir)
    scores = score_outputs(manifest, transfer_dir, table, exact=exact)
    size = int(load_image(Path(transfer_dir) / manifest["path"].iloc[0]).shape[0])
    realism_set = real_embeddings(table, size, evaluate["realism_reference_images"], seed)
    summary = summarise(scores, evaluate["n_bootstrap"], seed)
    estimator = validate_mesh_estimator(table)
    metrics = _metrics(scores, summary, realism_distances(scores, realism_set), estimator)
    metrics["n_realism_reference"] = int(len(realism_set))
    write_json(Path(reports_dir) / "metrics" / METRICS, metrics)
    per_au = summary[summary["metric"].str.startswith("error_")].assign(
        au=lambda d: d["metric"].str.removeprefix("error_")
    )[["method", "au", "mean", "lo", "hi", "n"]]
    atomic_write_bytes(
        Path(reports_dir) / "plots" / AU_ERROR_PLOT, per_au.to_csv(index=False).encode()
    )
    return EvaluateResult(
        table,
        manifest,
        scores,
        summary,
        compare_methods(scores),
        mixed_model(scores),
        estimator,
        metrics,
        exact,
    )


def _metrics(scores, summary, realism, estimator) -> dict:
    def mean(method, metric):
        row = summary[(summary["method"] == method) & (summary["metric"] == metric)]
        value = row["mean"].iloc[0] if len(row) else np.nan
        return None if not np.isfinite(value) else float(value)

    methods = {}
    for method in scores["method"].unique():
        methods[method] = {
            "n_outputs": int((scores["method"] == method).sum()),
            "detection_rate": mean(method, "detection_rate"),
            "identity_similarity": mean(method, "identity_similarity"),
            "source_leakage": mean(method, "source_leakage"),
            "identity_match_rate": mean(method, "identity_match"),
            "source_match_rate": mean(method, "source_match"),
            "nme": mean(method, "nme"),
            "pspi_mae": mean(method, "error_PSPI"),
            "realism_distance": realism[method],
            "ssim_to_exact": mean(method, "ssim_to_exact"),
            "psnr_to_exact": mean(method, "psnr_to_exact"),
            "nme_to_exact": mean(method, "nme_to_exact"),
            "au_mae": {au: mean(method, f"error_{au}") for au in PAIN_AUS},
        }
    return {
        "methods": methods,
        "au_estimator": {
            "backend": "mesh",
            "mae": {au: float(estimator.loc[au, "mae"]) for au in estimator.index},
            "icc": {au: estimator.loc[au, "icc"] for au in estimator.index},
            "unreliable_aus": [au for au in PAIN_AUS if not estimator.loc[au, "reliable"]],
        },
        "realism_feature_space": "dlib-128 (Frechet distance to held-out ground-truth frames)",
    }


def method_table(result: EvaluateResult) -> pd.DataFrame:
    """Metric x method: mean [95 % bootstrap CI]; AUs the estimator cannot read are marked."""
    summary = result.summary
    unreliable = set(result.metrics["au_estimator"]["unreliable_aus"])

    def cell(row):
        if not np.isfinite(row["lo"]):
            return f"{row['mean']:.3f}"
        return f"{row['mean']:.3f} [{row['lo']:.3f}, {row['hi']:.3f}]"

    shown = summary.assign(text=summary.apply(cell, axis=1))
    shown["metric"] = shown["metric"].map(
        lambda m: m + (" (estimator unreliable)" if m.removeprefix("error_") in unreliable else "")
    )
    return shown.pivot(index="metric", columns="method", values="text")


def au_error_figure(result: EvaluateResult, figures_dir):
    """|estimated - requested| per AU and method (AU4 and AU43 starred)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    unreliable = set(result.metrics["au_estimator"]["unreliable_aus"])
    long = result.scores.melt(
        id_vars=["method"],
        value_vars=[f"error_{a}" for a in PAIN_AUS],
        var_name="au",
        value_name="error",
    )
    labels = {
        f"error_{a}": a
        + ("*" if a in ("AU04", "AU43") else "")
        + ("\n(unreliable)" if a in unreliable else "")
        for a in PAIN_AUS
    }
    long["au"] = long["au"].map(labels)
    fig, ax = plt.subplots(figsize=(10, 3.6))
    sns.barplot(
        long, x="au", y="error", hue="method", errorbar=("ci", 95), n_boot=500, seed=0, ax=ax
    )
    ax.set(xlabel="", ylabel="|estimated - requested| (FACS)")
    ax.legend(fontsize=8, ncols=4)
    save_figure(fig, Path(figures_dir) / "eval_au_error.png")
    return fig


def identity_pspi_figure(result: EvaluateResult, figures_dir):
    """Left: similarity to the target and to the source; right: PSPI asked for vs estimated."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    scores = result.scores
    ident = scores.melt(
        id_vars=["method"],
        value_vars=["identity_similarity", "source_leakage"],
        var_name="to",
        value_name="cosine similarity (dlib)",
    ).dropna()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    sns.boxplot(ident, x="method", y="cosine similarity (dlib)", hue="to", ax=axes[0], fliersize=2)
    sns.scatterplot(
        scores, x="requested_PSPI", y="estimated_PSPI", hue="method", alpha=0.6, s=14, ax=axes[1]
    )
    top = float(np.nanmax(scores[["requested_PSPI", "estimated_PSPI"]].to_numpy()))
    axes[1].plot([0, top], [0, top], "k--", lw=0.8)
    fig.tight_layout()
    save_figure(fig, Path(figures_dir) / "eval_identity_pspi.png")
    return fig


def extremes_figure(result: EvaluateResult, transfer_dir, figures_dir):
    """The best and worst 4 PainControl outputs by SSIM, each beside its exact answer."""
    import matplotlib.pyplot as plt

    scores = result.scores
    ours = scores.head(0)
    if "ssim_to_exact" in scores:
        ours = scores[(scores["method"] == "paincontrol") & scores["ssim_to_exact"].notna()]
    if len(ours) and result.exact is not None:
        asked = requested_aus(result.manifest, result.table)
        ranked = ours.sort_values("ssim_to_exact")
        tiles = []
        for i, row in pd.concat([ranked.tail(4), ranked.head(4)]).iterrows():
            image = load_image(Path(transfer_dir) / row["path"])
            wanted = asked.loc[i, list(PAIN_AUS)].to_dict()
            crop, _ = result.exact(row["target"], wanted, image.shape[0])
            tiles.append(np.concatenate([image, crop], axis=1))
        grid = np.concatenate(
            [np.concatenate(tiles[:4], axis=1), np.concatenate(tiles[4:], axis=1)]
        )
        fig, ax = plt.subplots(figsize=(12, 3.4))
        ax.imshow(grid)
        ax.set_title("best 4 (top) and worst 4 (bottom) by SSIM: output | exact answer", fontsize=9)
    else:  # real data: no renderer, no exact answers
        fig, ax = plt.subplots(figsize=(6, 1))
        ax.text(0.5, 0.5, "no exact answers on this dataset (SynthPain only)", ha="center")
    ax.axis("off")
    save_figure(fig, Path(figures_dir) / "eval_extremes.png")
    return fig
