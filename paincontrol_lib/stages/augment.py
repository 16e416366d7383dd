"""Stage 05 (notebook ``05_augmentation``): pain detectors trained on real data only vs real +
synthetic across a sweep of how many training people keep their real pain frames; a bootstrap
over test people and seeds together (paired by both), the declared claims (Holm over them) with an
equivalence test wherever a verdict could say "no gain", a mixed model as a description, and
the claim block: PainControl against real-only *and* against the warp, classic augmentation as
a control.

Leak-free by construction: the generator (``augment.generator``) must be shown, from its own
training records, never to have seen a pain frame any cell withholds
(``augment/generator.py``); sources come only from each cell's allowed people, targets are new
identities; every detector setting is chosen on validation people within each fit."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from paincontrol_lib.augment.bank import (
    SyntheticBank,
    crop_of,
    mesh_features,
    new_synthpain_faces,
    real_images,
    training_people_faces,
)
from paincontrol_lib.augment.cells import (
    ARMS,
    check_no_leakage,
    pain_people,
    pair_frames,
    plan_cells,
    subject_split,
)
from paincontrol_lib.augment.detectors import DETECTORS
from paincontrol_lib.augment.generator import check_cells, dataset_id, generator_training_data
from paincontrol_lib.augment.statistics import (
    Predictions,
    inference,
    metrics_json,
    mixed_model,
    summarise,
    tests_table,
)
from paincontrol_lib.augment.sweep import run_sweep
from paincontrol_lib.io import atomic_write_bytes, save_figure, write_json
from paincontrol_lib.landmarks.mesher import FaceMesher
from paincontrol_lib.landmarks.table import load_landmark_table
from paincontrol_lib.model.presets import PainControlModel
from paincontrol_lib.model.sampler import tuned_sampler
from paincontrol_lib.stats import FitError
from paincontrol_lib.transfer import Transfer

METRICS = "augment.json"
RESULTS_PLOT = "augment_results.csv"


@dataclass
class AugmentResult:
    table: pd.DataFrame  # the landmark table
    results: pd.DataFrame  # one row per fit (detector, level, arm, seed)
    summary: pd.DataFrame  # mean and CI per (detector, level, arm); AUC: people and seeds
    tests: pd.DataFrame  # every comparison x level: estimate [CI], p, Holm family, TOST, verdict
    mixed: dict  # detector -> fitted mixed model, or why it failed (str)
    cells: list  # the planned cells
    bank: SyntheticBank  # the synthetic images
    metrics: dict  # reports/metrics/augment.json


def _check(params: dict) -> None:
    arms, detectors = list(params["arms"]), list(params["detectors"])
    for what, given, known in (("arm", arms, ARMS), ("detector", detectors, DETECTORS)):
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ValueError(f"unknown {what}s {unknown}; expected some of {known}")
    if "real" not in arms:
        raise ValueError("arms must include 'real', the baseline every other arm is tested against")
    if params["primary_detector"] not in detectors:
        raise ValueError(f"primary_detector {params['primary_detector']!r} is not in {detectors}")


def _targets(params, table, train_people, synthpain_dir, mesher) -> list:
    """The new identities synthetic faces are put on: fresh SynthPain people, or (real data)
    the training people's neutral faces."""
    if params["targets"] == "new_synthpain":
        if synthpain_dir is None:
            raise ValueError(
                "augment.targets=new_synthpain puts the synthetic pain on new SynthPain people, "
                "which only suits SynthPain data: with real data set augment.targets=train (the "
                "training people's own faces receive the synthetic expressions)"
            )
        return new_synthpain_faces(
            synthpain_dir, params["n_new_identities"], params["new_identity_seed"], mesher
        )
    if params["targets"] == "train":
        return training_people_faces(table, train_people)
    raise ValueError(f"targets {params['targets']!r}: expected 'new_synthpain' or 'train'")


def generator_block(checkpoint, training, withheld_seen: int) -> dict:
    """``augment.json: generator``: which checkpoint, what it was trained on (from its records),
    whether it was fine-tuned per cell, and the withheld pain frames it saw (computed)."""
    pretraining = [f"{t.dataset}: {len(t.people)} people ({t.source})" for t in training]
    return {
        "checkpoint": str(checkpoint),
        "pretraining": "; ".join(pretraining),
        "finetuned_per_cell": False,
        "withheld_pain_frames_seen": withheld_seen,
    }


def run(
    base: dict,
    data: dict,
    augment: dict,
    sampler: dict,
    tuning,
    landmarks_dir,
    reports_dir,
) -> AugmentResult:
    """Plan the cells, clear the generator (``augment.generator``) for every cell, generate the
    synthetic bank once (with the sampler stage 02 chose on validation people, ``tuning``), fit
    every (detector, cell, arm) with its settings chosen on validation people, score on test
    people; write ``augment.json`` and the per-fit results."""
    _check(augment)
    seed, workers = base["seed"], base["workers"]
    arms, detectors = list(augment["arms"]), list(augment["detectors"])
    table = load_landmark_table(landmarks_dir)
    synthpain_dir = data["root"] if data["source"] == "synthpain" else None
    timing, start = {}, time.perf_counter()
    train_people, val_people, test_people = subject_split(table)
    seeds = [seed + i for i in range(augment["n_seeds"])]
    with FaceMesher() as mesher:
        targets = _targets(augment, table, train_people, synthpain_dir, mesher)
        check_no_leakage([f.name for f in targets], test_people)
        check_no_leakage([f.name for f in targets], val_people)
        cells = plan_cells(
            table,
            train_people,
            augment["levels"],
            seeds,
            augment["pairs_per_cell"],
            len(targets),
            seed,
        )
        generator = augment["generator"]
        training = generator_training_data(generator)
        seen = check_cells(training, table, dataset_id(data["root"]), train_people, cells)
        bank = SyntheticBank(table, targets, augment["pain_frames"], seed)
        engine = Transfer(
            PainControlModel.from_pretrained(generator), tuned_sampler(sampler, tuning)
        )
        pairs = {pair for cell in cells for pair in cell.pairs}
        timing["generation_seconds"] = bank.build(engine, pairs, [a for a in arms if a != "real"])
        rows = table[table["detected"]]
        train_rows = rows[rows["subject"].isin(train_people)].reset_index(drop=True)
        real_train = real_images(train_rows)
        test = real_images(rows[rows["subject"].isin(test_people)])
        val = real_images(rows[rows["subject"].isin(val_people)])
        if "mesh" in detectors:
            mesh_start = time.perf_counter()
            for images in (real_train, val, test):
                images.features = mesh_features(images.crops, mesher)
            bank.add_features(mesher)
            timing["mesh_feature_seconds"] = time.perf_counter() - mesh_start
    fit_start = time.perf_counter()
    results = run_sweep(
        real_train,
        train_rows,
        val,
        test,
        bank.images,
        cells,
        train_people,
        val_people,
        test_people,
        arms,
        detectors,
        augment,
        workers,
    )
    timing["fit_seconds"] = time.perf_counter() - fit_start
    predictions = Predictions(np.stack(results.pop("test_prob").to_numpy()), test.pspi > 0,
                                  np.asarray(test.identity))  # fmt: skip
    statistics_start = time.perf_counter()
    settings = augment["inference"]
    blocks = {d: inference(results, predictions, d, settings, seed) for d in detectors}
    summary = summarise(results, blocks)
    mixed, failures = {}, []
    for d in detectors:
        failures += [{"detector": d, **f} for f in blocks[d].pop("failures")]
        try:
            mixed[d] = mixed_model(results, d)
        except FitError as error:
            mixed[d] = str(error)
            failures.append({"detector": d, "fit": "mixed model", "reason": str(error)})
    _check_failures(failures, settings)
    timing["statistics_seconds"] = time.perf_counter() - statistics_start
    timing["seconds"] = time.perf_counter() - start
    config = {
        "generator": generator_block(generator, training, seen),
        "design": {
            "n_test_people": len(test_people),
            "n_val_people": len(val_people),
            "n_seeds": len(seeds),
            "selection": "per fit on validation people: CNN steps (early stopping on AUC), "
            "mesh PCA components, F1 threshold",
            "sources": "pain sequences of each cell's own pain people only",
            "targets": f"{len(targets)} new identities ({augment['targets']}), in no split",
        },
        "n_train_people": len(train_people),
        "n_val_people": len(val_people),
        "n_test_people": len(test_people),
        "n_test_images": len(test),
        "n_test_pain": int((test.pspi > 0).sum()),
        "n_pain_people_available": len(pain_people(table, train_people)),
        "seeds": seeds,
        "pairs_per_cell": augment["pairs_per_cell"],
        "n_new_identities": len(targets),
        "targets": augment["targets"],
        "synthetic_mesh_detection_rate": _synthetic_detection(bank, arms, detectors),
        **timing,
    }
    metrics = metrics_json(summary, blocks, augment["primary_detector"], settings, config)
    metrics["fits_failed"] = {"count": len(failures), "failures": failures}
    write_json(Path(reports_dir) / "metrics" / METRICS, metrics)
    atomic_write_bytes(
        Path(reports_dir) / "plots" / RESULTS_PLOT, results.to_csv(index=False).encode()
    )
    tests = tests_table(blocks)
    return AugmentResult(table, results, summary, tests, mixed, cells, bank, metrics)


def _check_failures(failures: list, settings: dict) -> None:
    """A comparison that could not be tested or a model that did not fit stops the stage,
    unless ``augment.inference.allow_failed_fits`` lets ``augment.json: fits_failed`` name it."""
    if failures and not settings["allow_failed_fits"]:
        named = "; ".join(" ".join(f"{k}={v}" for k, v in f.items()) for f in failures)
        raise RuntimeError(
            f"stage 05: {len(failures)} fit(s) or comparison(s) failed: {named} "
            "(augment.inference.allow_failed_fits: true reports them in augment.json instead)"
        )


def _synthetic_detection(bank, arms, detectors) -> dict:
    """Per synthetic arm: the share of its images MediaPipe meshes (None without mesh features)."""
    return {
        method: float(
            np.mean(
                [~np.isnan(i.features).any(1) for (m, _), i in bank.images.items() if m == method]
            )
        )
        if "mesh" in detectors
        else None
        for method in arms
        if method != "real"
    }


def claim_table(result: AugmentResult) -> pd.DataFrame:
    """The claim block (primary detector): each comparison at each level, AUC difference
    [95 % CI], its Holm family and Holm-adjusted p, the equivalence test's Holm-adjusted p and
    the verdict."""
    rows = []
    for name, levels in result.metrics["claim"].items():
        if not isinstance(levels, dict):
            continue
        for level, test in levels.items():
            rows.append({"comparison": name, "people with real pain": int(level),
                         "AUC difference": test["estimate"], "ci_low": test["ci_low"],
                         "ci_high": test["ci_high"], "family": test["family"],
                         "p_holm": test["p_holm"], "p_tost_holm": test["p_tost_holm"],
                         "verdict": test["verdict"], "n_seeds": test["n_seeds"]})  # fmt: skip
    index = ["comparison", "people with real pain"]
    return pd.DataFrame(rows, columns=None if rows else index).set_index(index)


def overview(result: AugmentResult) -> dict:
    keys = (
        "n_train_people",
        "n_test_people",
        "n_test_images",
        "n_test_pain",
        "n_pain_people_available",
        "n_new_identities",
        "seconds",
    )
    return {k: result.metrics[k] for k in keys}


# what readers see for each arm and detector
ARM_LABELS = {
    "real": "real only",
    "paincontrol": "real + PainControl",
    "warp": "real + warp baseline",
    "classic": "real + classic augmentation",
}
_SYNTHETIC_LABELS = {
    "paincontrol": "PainControl",
    "warp": "warp baseline",
    "classic": "classic\naugmentation",
}
_DETECTOR_LABELS = {"cnn": "CNN on face crops", "mesh": "linear model on mesh features"}


def _arm_style(arm: str) -> dict:
    """One colour and marker per arm (real only: grey), the same in every panel."""
    from paincontrol_lib.figures import colour

    index = ARMS.index(arm) if arm in ARMS else len(ARMS)
    return {"color": colour((7, 0, 2, 4, 5)[index]), "marker": "osD^v"[index]}


def samples_figure(result: AugmentResult, augment: dict, figures_dir, n_pairs: int = 4):
    """Synthetic pairs of the sweep with the strongest pain frames, one per source sequence (a
    pair of PSPI 1-3 frames shows no visible pain): the source's real frames | each synthetic
    arm."""
    from paincontrol_lib.figures import image_grid

    arms = [arm for arm in ("paincontrol", "warp", "classic") if arm in augment["arms"]]
    pairs = list(dict.fromkeys(pair for cell in result.cells for pair in cell.pairs))
    framed = [(pair, pair_frames(result.table, pair[0], augment["pain_frames"]))
              for pair in pairs]  # fmt: skip
    framed.sort(key=lambda item: -float(item[1]["PSPI"].max()))  # stable: ties keep their order
    framed = list({pair[0]: (pair, frames) for pair, frames in reversed(framed)}.values())[::-1]
    rows, labels, n_frames = [], [], 0
    for pair, frames in framed[:n_pairs]:
        row = [crop_of(r) for _, r in frames.iterrows()]
        for arm in arms:
            row += list(result.bank.get(arm, [pair]).crops)
        rows.append(row)
        n_frames = max(n_frames, len(frames))
        person, face = frames["subject"].iloc[0], result.bank.targets[pair[1]].name
        pspi = " / ".join(f"{p:g}" for p in frames["PSPI"])
        labels.append(f"{person} -> {face}\nPSPI {pspi}")
    frame_names = ["no pain"] + (
        ["pain"] if n_frames == 2 else [f"pain {k}" for k in range(1, n_frames)]
    )
    blocks = ["real source", *(_SYNTHETIC_LABELS.get(a, a) for a in arms)]
    columns = [f"{block}\n{name}" for block in blocks for name in frame_names]
    title = (
        "Synthetic training images: source frames put on new faces (the sweep's strongest pairs)"
    )
    fig = image_grid(rows, labels, columns, cell_inches=min(1.2, 12 / len(columns)), title=title)
    save_figure(fig, Path(figures_dir) / "augment_samples.png")
    return fig


def scarcity_figure(result: AugmentResult, figures_dir):
    """AUC and PSPI correlation against the number of people with real pain frames, per arm
    (mean over seeds; bars: AUC's 95 % bootstrap over test people and seeds, PSPI correlation's
    t-interval over seeds), one column per detector."""
    import matplotlib.pyplot as plt

    from paincontrol_lib.figures import colour

    summary = result.summary
    detectors = sorted(summary["detector"].unique())
    levels = sorted(summary["level"].unique())
    arms = [a for a in ARMS if a in set(summary["arm"])]
    arms += sorted(set(summary["arm"]) - set(arms))
    metrics = {
        "auc": ("AUC (test people)", (0.0, 1.0)),
        "pcc": ("PSPI correlation\n(Pearson r, test people)", (-1.0, 1.0)),
    }
    fig, axes = plt.subplots(
        2,
        len(detectors),
        figsize=(5 * len(detectors), 6.6),
        squeeze=False,
        sharex=True,
        sharey="row",
    )
    for j, detector in enumerate(detectors):
        for i, (metric, (label, (low, high))) in enumerate(metrics.items()):
            ax = axes[i, j]
            for k, arm in enumerate(arms):
                group = summary[(summary["detector"] == detector) & (summary["arm"] == arm)]
                group = group.sort_values("level")
                x = group["level"] * 2 ** (0.06 * (k - (len(arms) - 1) / 2))  # dodge the bars
                mean = group[f"{metric}_mean"]
                lo = group[f"{metric}_ci_low"].clip(low, high)  # CIs past what r, AUC can be
                hi = group[f"{metric}_ci_high"].clip(low, high)
                ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], capsize=2.5, lw=1.2, ms=5,
                            label=ARM_LABELS.get(arm, arm), **_arm_style(arm))  # fmt: skip
            if metric == "auc":
                ax.axhline(0.5, color=colour(7), lw=0.8, ls=":", zorder=0, label="chance")
            ax.set_xscale("log", base=2)
            ax.set_xlim(min(levels) / 1.6, max(levels) * 1.6)
            ax.set_xticks(levels, [f"{level:g}" for level in levels])
            ax.minorticks_off()
            ax.set_ylabel(label if j == 0 else "")
            if i == 1:
                ax.set_xlabel("number of training people with real pain frames")
            else:
                ax.set_title(_DETECTOR_LABELS.get(detector, f"{detector} detector"))
            ax.grid(alpha=0.3)
    n_seeds = int(summary["n_seeds"].max())
    handles, names = axes[0, 0].get_legend_handles_labels()
    order = sorted(range(len(names)), key=lambda k: names[k] == "chance")  # chance last
    fig.legend([handles[k] for k in order], [names[k] for k in order], loc="upper center",
               ncols=len(names), frameon=False, bbox_to_anchor=(0.5, 0.975))  # fmt: skip
    fig.suptitle(
        f"Pain detection as real pain frames get scarce (mean over {n_seeds} seeds; bars: AUC "
        "95 % bootstrap over test people and seeds, r 95 % t-interval over seeds)",
        y=0.995,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    save_figure(fig, Path(figures_dir) / "augment_scarcity.png")
    return fig


def mixed_summary(result: AugmentResult, augment: dict):
    """The primary detector's mixed model: one line on the model and its coefficient table, or
    why it could not be fitted."""
    fit = result.mixed[augment["primary_detector"]]
    if isinstance(fit, str):
        return f"not fitted: {fit}"
    print(f"MixedLM of the test AUC: {int(fit.nobs)} fits in {len(fit.model.group_labels)} "
          f"groups (random intercepts), converged: {fit.converged}")  # fmt: skip
    return fit.summary().tables[1]
