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
    condition_pspi,
    load_design,
    load_key,
    stage_candidates,
)
from paincontrol_lib.study.simulate import simulate_ratings
from paincontrol_lib.study.validation import power_table, replicate, summarise

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
    base: dict, study: dict, transfer_dir, landmarks_dir, study_dir, reports_dir, data=None
) -> StudyResult:
    """Build the trial set into ``study_dir``, rate it (simulated unless ``study.ratings`` names
    an export), analyse and write ``study.json``; ``data`` (params ``data``) says what the real
    condition's frames are (``study.json: real_items``)."""
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
        "real_items": REAL_ITEMS.get((data or {}).get("source"), "photographs"),
        "pspi_by_condition": condition_pspi(key),
        "ratings_source": "simulated" if simulated else study["ratings"],
        "trials_per_rater": design["trials_per_rater"],
        "simulation": {"effects": study["simulate"]["effects"]} if simulated else None,
        "labels": _stage_labels(transfer_dir),
    }
    with clock("validation"):
        replications, failures = _validate(trials, key, study, seed, base["workers"])
    validation = study["validation"]
    alpha = validation["alpha"]
    metrics["validation"] = summarise(replications[replications["panel"] == "null"], alpha)
    if (replications["panel"] == "effect").any():
        effect = summarise(replications[replications["panel"] == "effect"], alpha)
        metrics["validation"]["effect_panels"] = effect | {"effects": validation["power_effects"]}
    if validation["power_table"]["n_panels"]:
        with clock("power_table"):
            conditions = sorted(set(key.loc[key["kind"] == "item", "method"]))
            settings = {k: v for k, v in study["simulate"].items() if k != "effects"}
            first = validation["n_replications"] + validation["n_effect_panels"]
            rows, failed = power_table(trials, key, settings, conditions,
                                       validation["power_table"], seed,
                                       study["max_attention_failures"], first=first,
                                       workers=base["workers"])  # fmt: skip
        metrics["power_table"] = rows
        failures += [{"fit": "power table panel", **f} for f in failed]
    failures += analysis["metrics"]["fits_failed"]["failures"]
    metrics["fits_failed"] = {"count": len(failures), "failures": failures}
    if failures and not study["allow_failed_fits"]:
        named = "; ".join(" ".join(f"{k}={v}" for k, v in f.items()) for f in failures)
        raise RuntimeError(
            f"stage 06: {len(failures)} fit(s) failed: {named} "
            "(study.allow_failed_fits: true reports them in study.json instead)"
        )
    print(_validation_line(metrics["validation"]))
    metrics["phase_seconds"] = clock.seconds
    metrics["seconds"] = time.perf_counter() - started
    write_json(Path(reports_dir) / "metrics" / METRICS, metrics)
    return StudyResult(design, key, analysis, replications, true_effects, label, metrics)


def _validate(trials, key, study: dict, seed: int, workers: int) -> tuple[pd.DataFrame, list]:
    """Instrument validation: ``n_replications`` simulated panels with every condition equally
    realistic (false positives) and ``n_effect_panels`` with ``power_effects`` (coverage of a
    known truth, power), each panel its own stream. The simulator's other settings are
    ``study.simulate``'s. ``(replications, failures)``."""
    conditions = sorted(set(key.loc[key["kind"] == "item", "method"]))
    settings = {k: v for k, v in study["simulate"].items() if k != "effects"}
    validation = study["validation"]
    panels = [("null", dict.fromkeys(conditions, 0.0), validation["n_replications"])]
    if validation["n_effect_panels"]:
        missing = sorted(set(conditions) - set(validation["power_effects"]))
        if missing:
            raise ValueError(f"study.validation.power_effects has no effect for {missing}")
        panels.append(("effect", validation["power_effects"], validation["n_effect_panels"]))
    parts, failures, first = [], [], 0
    for panel, effects, n in panels:
        rows, failed = replicate(trials, key, settings, effects, n, seed,
                                 study["max_attention_failures"], first=first,
                                 workers=workers)  # fmt: skip
        parts.append(rows.assign(panel=panel))
        failures += [{"fit": f"{panel} panel", **f} for f in failed]
        first += n
    return pd.concat(parts, ignore_index=True), failures


def _validation_line(validation: dict) -> str:
    """The instrument check in one printed line: false-positive rate with its Monte Carlo
    interval, and coverage of the known effects."""
    fpr = validation["false_positive_rate_mc"]
    line = (f"realism-study validation: false-positive rate {fpr['rate']:.3f} [Monte Carlo 95 % "
            f"{fpr['mc_ci_low']:.3f}, {fpr['mc_ci_high']:.3f}] over "
            f"{validation['n_replications']} null panels")  # fmt: skip
    effect = validation.get("effect_panels")
    if effect:
        cover = effect["ci_coverage_mc"]
        line += (f"; coverage of known effects {cover['rate']:.3f} [{cover['mc_ci_low']:.3f}, "
                 f"{cover['mc_ci_high']:.3f}], power {effect['power']:.3f} over "
                 f"{effect['n_replications']} effect panels")  # fmt: skip
    return line


def items_per_condition(result: StudyResult) -> pd.DataFrame:
    """Per condition: items, people shown and the PSPI asked for (generated) or shown (real,
    matched to the requests): ``study.json: pspi_by_condition``."""
    key = result.key
    items = key[key["kind"] == "item"]
    pspi = pd.DataFrame(result.metrics["pspi_by_condition"]).T.round(1)
    counts = items.groupby("method").agg(items=("image_id", "size"), people=("identity", "nunique"))
    return counts.join(pspi.add_prefix("PSPI "))


def validation_table(result: StudyResult) -> pd.DataFrame:
    """``study.json: validation`` as a table: each rate over the simulated panels with its Monte
    Carlo 95 % interval (null panels; ``effect_panels`` where there are any)."""
    rows, validation = [], result.metrics["validation"]
    for panels, entry in (("null", validation), ("effect", validation.get("effect_panels"))):
        for name in ("false_positive_rate", "ci_coverage", "power"):
            mc = (entry or {}).get(f"{name}_mc") or {}
            if mc.get("rate") is not None:
                rows.append({"panels": panels, "measure": name, "rate": mc["rate"],
                             "mc_ci_low": mc["mc_ci_low"], "mc_ci_high": mc["mc_ci_high"],
                             "n_panels": mc["n_panels"]})  # fmt: skip
    return pd.DataFrame(rows).round(3)


def _stage_labels(transfer_dir) -> dict:
    """method -> what ran, from stage 03's manifest (start and steps run)."""
    from paincontrol_lib.transfer import load_manifest, method_labels

    return method_labels(load_manifest(transfer_dir))


# What the real condition's items are, by data source: photographs unless the data are renders.
REAL_ITEMS = {"synthpain": "SynthPain renders"}


def _real(result: StudyResult) -> str:
    """The real condition, as readers should read it: the dataset's frames, of which kind."""
    return f"the dataset's frames ({result.metrics.get('real_items', 'photographs')})"


def _label(condition: str, result: StudyResult) -> str:
    """What readers see for a condition: the dataset's frames or what the method ran."""
    from paincontrol_lib.transfer import METHOD_LABELS

    if condition == REAL:
        return f"real: {result.metrics.get('real_items', 'photographs')}"
    return result.metrics.get("labels", {}).get(condition, METHOD_LABELS.get(condition, condition))


def _raters(result: StudyResult) -> str:
    """Who rated, for titles: simulated raters are flagged as such."""
    m = result.metrics
    n = m["n_raters"] - m["n_raters_excluded"]
    who = "SIMULATED raters" if m["ratings_source"] == "simulated" else "raters"
    return f"{n} {who} (after attention checks)"


def trials_figure(result: StudyResult, study_dir, figures_dir, per_condition: int = 4):
    """Example trial images per condition and attention checks, at the pixel size served."""
    from paincontrol_lib.figures import image_grid
    from paincontrol_lib.transfer import METHODS

    key = result.key
    methods = set(key["method"].dropna()) - {REAL}
    methods = [m for m in METHODS if m in methods] + sorted(methods - set(METHODS))
    shown = [REAL, *methods, "attention check"]
    rows = []
    for condition in shown:
        if condition == "attention check":
            ids = key.loc[key["kind"] == "attention", "image_id"]
        else:
            ids = key.loc[key["method"] == condition, "image_id"]
        images = [load_image(Path(study_dir) / IMAGES / f"{i}.png") for i in ids[:per_condition]]
        rows.append(images + [None] * (per_condition - len(images)))
    size = result.design["image_size"]
    fig = image_grid(
        rows,
        [_label(c, result) if c != "attention check" else c for c in shown],
        [f"example {k + 1}" for k in range(per_condition)],
        cell_inches=1.0,
        title=f"Trial images as served ({size} x {size} px)",
    )
    fig.subplots_adjust(top=1 - 0.45 / fig.get_figheight())  # title just above the columns
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
    import seaborn as sns

    from paincontrol_lib.figures import colour

    items, order = result.analysis["items"], _order(result)
    first = items[items["showing"] == 1]
    share = (
        first.groupby("method")["realism"]
        .value_counts(normalize=True)
        .unstack(fill_value=0)
        .reindex(index=order, columns=range(1, 6), fill_value=0)
    )
    names = [_label(m, result) for m in order]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    left = np.zeros(len(order))
    scale = {1: "1 artificial", 2: "2", 3: "3", 4: "4", 5: "5 real photo"}
    # a diverging red-grey-blue scale (safe for colour-blind readers): 1 artificial, 5 real
    for value, shade in zip(range(1, 6), sns.color_palette("coolwarm_r", 5), strict=True):
        axes[0].barh(names, share[value], left=left, color=shade, label=scale[value],
                     edgecolor="white", linewidth=0.5)  # fmt: skip
        left += share[value].to_numpy()
    axes[0].set(xlabel="share of ratings (first showings)", xlim=(0, 1),
                title="Realism ratings")  # fmt: skip
    axes[0].legend(ncols=5, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                   title="rating", title_fontsize=7, frameon=False)  # fmt: skip
    means = result.analysis["effects"].set_index("method").loc[order]
    axes[1].errorbar(
        means["mean"],
        range(len(order)),
        xerr=[means["mean"] - means["lo"], means["hi"] - means["mean"]],
        fmt="o",
        capsize=3,
        color=colour(0),
        label="mean [95 % CI over raters]",
    )
    axes[1].set(xlabel="mean rating (1 artificial - 5 real photo)", xlim=(1, 5),
                title="Mean realism rating")  # fmt: skip
    axes[1].legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    axes[0].invert_yaxis()
    fig.suptitle(f"Realism study: {_raters(result)}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, Path(figures_dir) / "study_ratings.png")
    return fig


def effects_figure(result: StudyResult, figures_dir):
    """Ordinal-model effects with 95 % CIs (crosses: the simulator's truth) and the crossed
    random-effects MixedLM as sensitivity."""
    import matplotlib.pyplot as plt

    from paincontrol_lib.figures import colour

    generated = [m for m in _order(result) if m != REAL]
    names = [_label(m, result) for m in generated]
    effect = result.analysis["effects"].set_index("method").loc[generated]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    y = np.arange(len(generated))
    axes[0].errorbar(
        effect["coef"],
        y,
        xerr=[effect["coef"] - effect["coef_lo"], effect["coef_hi"] - effect["coef"]],
        fmt="o",
        capsize=3,
        color=colour(0),
        label="estimate [95 % CI]",
    )
    if result.true_effects is not None:
        axes[0].plot(effect["true"], y, "x", color=colour(3), ms=9, mew=2,
                     label="simulator's true effect")  # fmt: skip
    axes[0].set(xlabel="log-odds of a higher rating than the real condition",
                title="Ordinal model (primary)")  # fmt: skip
    if result.analysis["mixed"] is not None:
        mixed = result.analysis["mixed"].set_index("method").loc[generated]
        axes[1].errorbar(
            mixed["coef"],
            y,
            xerr=[mixed["coef"] - mixed["lo"], mixed["hi"] - mixed["coef"]],
            fmt="s",
            capsize=3,
            color=colour(2),
            label="estimate [95 % CI]",
        )
    else:
        axes[1].text(0.5, 0.5, "not estimable", ha="center", transform=axes[1].transAxes)
    axes[1].set(xlabel="difference in mean rating from the real condition (points)",
                title="Linear mixed model (sensitivity)")  # fmt: skip
    for ax in axes:
        ax.axvline(0, color=colour(7), lw=0.8)  # no difference from the real condition
        handles, labels = ax.get_legend_handles_labels()
        first = sorted(range(len(labels)), key=lambda k: not labels[k].startswith("estimate"))
        ax.legend([handles[k] for k in first], [labels[k] for k in first], fontsize=8,
                  loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False,
                  ncols=2)  # fmt: skip
    axes[0].set(yticks=y, yticklabels=names)
    axes[0].invert_yaxis()
    fig.suptitle(f"Realism of each method against {_real(result)}: {_raters(result)}",
                 fontsize=10)  # fmt: skip
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
