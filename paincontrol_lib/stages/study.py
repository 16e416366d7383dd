"""Stage 06 (notebook ``06_realism_study``): build the blinded, randomised Likert trial set from
the transfer outputs and real held-out frames, then analyse ratings — simulated on the default
run (the documented rater simulator), or a ``paincontrol study export`` CSV of real ones."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from paincontrol_lib.io import PhaseClock, atomic_write_bytes, save_figure, write_json
from paincontrol_lib.landmarks.image import load_image
from paincontrol_lib.study.analysis import analyse, load_ratings
from paincontrol_lib.study.design import (
    IMAGES,
    REAL,
    build_trial_set,
    load_design,
    load_key,
    stage_candidates,
)
from paincontrol_lib.study.simulate import simulate_ratings
from paincontrol_lib.study.validation import replicate, summarise

METRICS = "study.json"
SIMULATED_RATINGS = "simulated_ratings.csv"


@dataclass
class StudyResult:
    design: dict  # the trial set's design.json
    key: pd.DataFrame  # image id -> condition (never served)
    analysis: dict  # study.analysis.analyse's output
    replications: pd.DataFrame  # instrument validation: null panels (and power panels, if asked)
    true_effects: dict | None  # the simulator's effects (simulated runs only)
    label: str  # where the ratings came from, for titles
    metrics: dict  # reports/metrics/study.json


def run(
    base: dict, study: dict, transfer_dir, landmarks_dir, study_dir, reports_dir
) -> StudyResult:
    """Build the trial set into ``study_dir``, rate it (simulated unless ``study.ratings`` names
    an export), analyse and write ``study.json``."""
    started, clock = time.perf_counter(), PhaseClock()
    seed = base["seed"]
    with clock("trial_set"):
        design = build_trial_set(
            stage_candidates(transfer_dir, landmarks_dir),
            study_dir,
            items_per_method=study["items_per_method"],
            repeats=study["repeats"],
            attention_checks=study["attention_checks"],
            n_raters=study["n_raters"],
            seed=seed,
        )
    _, trials = load_design(study_dir)
    key = load_key(study_dir)
    simulated = not study["ratings"]
    if simulated:
        ratings = simulate_ratings(trials, key, seed=seed, **study["simulate"])
        true_effects = ratings.attrs["true_effects"]
        atomic_write_bytes(
            Path(study_dir) / SIMULATED_RATINGS, ratings.to_csv(index=False).encode()
        )
    else:
        ratings, true_effects = load_ratings(study["ratings"]), None
    label = "SIMULATED raters" if simulated else f"ratings from {study['ratings']}"
    with clock("analysis"):
        analysis = analyse(
            ratings,
            max_attention_failures=study["max_attention_failures"],
            n_bootstrap=study["n_bootstrap"],
            seed=seed,
            true_effects=true_effects,
        )
    metrics = {
        **analysis["metrics"],
        "ratings_source": "simulated" if simulated else study["ratings"],
        "trials_per_rater": design["trials_per_rater"],
        "simulation": {"effects": study["simulate"]["effects"]} if simulated else None,
    }
    with clock("validation"):
        replications = _validate(trials, key, study, seed)
    alpha = study["validation"]["alpha"]
    metrics["validation"] = summarise(replications[replications["panel"] == "null"], alpha)
    if (replications["panel"] == "power").any():
        power = summarise(replications[replications["panel"] == "power"], alpha)
        metrics["power"] = power | {"effects": study["validation"]["power_effects"]}
    metrics["phase_seconds"] = clock.seconds
    metrics["seconds"] = time.perf_counter() - started
    write_json(Path(reports_dir) / "metrics" / METRICS, metrics)
    return StudyResult(design, key, analysis, replications, true_effects, label, metrics)


def _validate(trials, key, study: dict, seed: int) -> pd.DataFrame:
    """Instrument validation: ``n_replications`` simulated panels with every condition equally
    realistic (false positives, coverage) and, when ``power_effects`` are given, as many with
    those effects (power). The simulator's other settings are ``study.simulate``'s."""
    conditions = sorted(set(key.loc[key["kind"] == "item", "method"]))
    settings = {k: v for k, v in study["simulate"].items() if k != "effects"}
    validation = study["validation"]
    panels = {"null": dict.fromkeys(conditions, 0.0)}
    if validation["power_effects"]:
        panels["power"] = validation["power_effects"]
    n, failures = validation["n_replications"], study["max_attention_failures"]
    return pd.concat(
        [
            replicate(trials, key, settings, effects, n, seed, failures).assign(panel=panel)
            for panel, effects in panels.items()
        ],
        ignore_index=True,
    )


def items_per_condition(result: StudyResult) -> pd.DataFrame:
    key = result.key
    return key[key["kind"] == "item"].groupby(["method", "identity"]).size().unstack()


def trials_figure(result: StudyResult, study_dir, figures_dir, per_condition: int = 4):
    """Example trial images per condition and attention checks, at the pixel size served."""
    import matplotlib.pyplot as plt

    key = result.key
    shown = [REAL, *sorted(set(key["method"].dropna()) - {REAL}), "attention check"]
    fig, axes = plt.subplots(len(shown), per_condition, figsize=(6, 1.6 * len(shown)))
    for row, condition in zip(axes, shown, strict=True):
        if condition == "attention check":
            ids = key.loc[key["kind"] == "attention", "image_id"]
        else:
            ids = key.loc[key["method"] == condition, "image_id"]
        for ax, image_id in zip(row, ids[:per_condition], strict=False):
            ax.imshow(load_image(Path(study_dir) / IMAGES / f"{image_id}.png"))
        for ax in row:
            ax.set_xticks([]), ax.set_yticks([])
        row[0].set_ylabel(condition, fontsize=8)
    fig.suptitle(f"trial images ({result.design['image_size']} px, opaque ids)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, Path(figures_dir) / "study_trials.png")
    return fig


def effects_table(result: StudyResult) -> pd.DataFrame:
    """Per condition: n, mean rating [95 % CI over raters], ordinal-model effect [CI] (and the
    simulator's truth on simulated runs)."""
    table = result.analysis["effects"].copy()
    table["mean [CI]"] = table.apply(
        lambda r: f"{r['mean']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}]", axis=1
    )
    table["effect [CI]"] = table.apply(
        lambda r: (
            "reference"
            if r["method"] == REAL
            else f"{r['coef']:.2f} [{r['coef_lo']:.2f}, {r['coef_hi']:.2f}]"
        ),
        axis=1,
    )
    columns = ["method", "n", "mean [CI]", "effect [CI]"] + (["true"] if "true" in table else [])
    return table[columns].set_index("method")


def contrasts_table(result: StudyResult) -> pd.DataFrame:
    return pd.DataFrame(result.metrics["contrasts"]).T.round(3)


def _order(result: StudyResult) -> list[str]:
    return result.analysis["effects"].sort_values("mean", ascending=False)["method"].tolist()


def ratings_figure(result: StudyResult, figures_dir):
    """Left: the share of each rating per condition; right: mean rating [95 % CI over raters]."""
    import matplotlib.pyplot as plt

    items, order = result.analysis["items"], _order(result)
    first = items[items["showing"] == 1]
    share = (
        first.groupby("method")["realism"]
        .value_counts(normalize=True)
        .unstack(fill_value=0)
        .reindex(index=order, columns=range(1, 6), fill_value=0)
    )
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    left = np.zeros(len(order))
    for value, colour in zip(range(1, 6), plt.cm.RdYlGn(np.linspace(0.05, 0.95, 5)), strict=True):
        axes[0].barh(order, share[value], left=left, color=colour, label=str(value))
        left += share[value].to_numpy()
    axes[0].invert_yaxis()
    axes[0].set(
        xlabel="share of ratings",
        title=f"realism ratings (1 artificial - 5 real photo); {result.label}",
    )
    axes[0].legend(
        ncols=5,
        fontsize=7,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.18),
        title="rating",
        title_fontsize=7,
    )
    means = result.analysis["effects"].set_index("method").loc[order]
    axes[1].errorbar(
        means["mean"],
        range(len(order)),
        xerr=[means["mean"] - means["lo"], means["hi"] - means["mean"]],
        fmt="o",
        capsize=3,
    )
    axes[1].set(
        yticks=range(len(order)),
        yticklabels=order,
        xlabel="mean rating [95 % CI over raters]",
        xlim=(1, 5),
    )
    axes[1].invert_yaxis()
    fig.tight_layout()
    save_figure(fig, Path(figures_dir) / "study_ratings.png")
    return fig


def effects_figure(result: StudyResult, figures_dir):
    """Ordinal-model effects with 95 % CIs (crosses: the simulator's truth) and the crossed
    random-effects MixedLM as sensitivity."""
    import matplotlib.pyplot as plt

    generated = [m for m in _order(result) if m != REAL]
    effect = result.analysis["effects"].set_index("method").loc[generated]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
    y = np.arange(len(generated))
    axes[0].errorbar(
        effect["coef"],
        y,
        xerr=[effect["coef"] - effect["coef_lo"], effect["coef_hi"] - effect["coef"]],
        fmt="o",
        capsize=3,
        label="estimate [95 % CI]",
    )
    if result.true_effects is not None:
        axes[0].plot(effect["true"], y, "x", color="crimson", ms=9, label="simulator's truth")
    axes[0].axvline(0, color="k", lw=0.8)
    axes[0].set(
        yticks=y,
        yticklabels=generated,
        xlabel="log-odds of a higher rating vs real photos",
        title=result.label,
    )
    axes[0].legend(fontsize=8)
    if result.analysis["mixed"] is not None:
        mixed = result.analysis["mixed"].set_index("method").loc[generated]
        axes[1].errorbar(
            mixed["coef"],
            y,
            xerr=[mixed["coef"] - mixed["lo"], mixed["hi"] - mixed["coef"]],
            fmt="s",
            capsize=3,
            color="tab:green",
        )
    axes[1].axvline(0, color="k", lw=0.8)
    axes[1].set(yticks=y, yticklabels=generated, xlabel="rating points vs real photos (MixedLM)")
    for ax in axes:
        ax.invert_yaxis()
    fig.tight_layout()
    save_figure(fig, Path(figures_dir) / "study_effects.png")
    return fig


def reliability(result: StudyResult) -> pd.Series:
    m = result.metrics
    return pd.Series(
        {
            "raters": m["n_raters"],
            "excluded by attention checks": m["n_raters_excluded"],
            "ratings analysed (first showings)": m["n_ratings_analysed"],
            "Krippendorff's alpha (ordinal)": round(m["reliability"], 3),
            **{f"test-retest {k}": v for k, v in m["test_retest"].items()},
        }
    )
