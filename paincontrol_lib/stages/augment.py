"""Stage 05 (notebook ``05_augmentation``): pain detectors trained on real data only vs real +
synthetic across a sweep of how many training people keep their real pain frames; paired tests
per level, a mixed model, and the claim block: PainControl against real-only *and* against the
warp, classic augmentation as a control.

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
from paincontrol_lib.augment.statistics import arm_tests, metrics_json, mixed_model, summarise
from paincontrol_lib.augment.sweep import run_sweep
from paincontrol_lib.io import atomic_write_bytes, save_figure, write_json
from paincontrol_lib.landmarks.mesher import FaceMesher
from paincontrol_lib.landmarks.table import load_landmark_table
from paincontrol_lib.model.presets import PainControlModel
from paincontrol_lib.model.sampler import tuned_sampler
from paincontrol_lib.transfer import Transfer

METRICS = "augment.json"
RESULTS_PLOT = "augment_results.csv"


@dataclass
class AugmentResult:
    table: pd.DataFrame  # the landmark table
    results: pd.DataFrame  # one row per fit (detector, level, arm, seed)
    summary: pd.DataFrame  # mean and CI over seeds per (detector, level, arm)
    tests: pd.DataFrame  # paired gains over real-only
    mixed: dict  # detector -> fitted mixed model (or None)
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
    timing["seconds"] = time.perf_counter() - start
    summary, tests = summarise(results), arm_tests(results)
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
    metrics = metrics_json(summary, tests, results, augment["primary_detector"], config)
    write_json(Path(reports_dir) / "metrics" / METRICS, metrics)
    atomic_write_bytes(
        Path(reports_dir) / "plots" / RESULTS_PLOT, results.to_csv(index=False).encode()
    )
    mixed = {d: mixed_model(results, d) for d in detectors}
    return AugmentResult(table, results, summary, tests, mixed, cells, bank, metrics)


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
    [95 % CI], Holm-corrected p."""
    rows = []
    for name, levels in result.metrics["claim"].items():
        if not isinstance(levels, dict):
            continue
        for level, test in levels.items():
            rows.append({"comparison": name, "people with real pain": int(level),
                         "AUC difference": test["estimate"], "ci_low": test["ci_low"],
                         "ci_high": test["ci_high"], "p_holm": test["p_holm"],
                         "n_seeds": test["n_seeds"]})  # fmt: skip
    return pd.DataFrame(rows).set_index(["comparison", "people with real pain"])


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


def samples_figure(result: AugmentResult, augment: dict, figures_dir, n_pairs: int = 4):
    """Synthetic pairs of the first cell: the source's real frames | each synthetic arm."""
    import matplotlib.pyplot as plt

    arms = [arm for arm in ("paincontrol", "warp", "classic") if arm in augment["arms"]]
    rows, labels = [], []
    for pair in result.cells[0].pairs[:n_pairs]:
        frames = pair_frames(result.table, pair[0], augment["pain_frames"])
        blocks = [np.stack([crop_of(r) for _, r in frames.iterrows()])]
        blocks += [result.bank.get(arm, [pair]).crops for arm in arms]
        rows.append(np.concatenate([np.concatenate(list(b), axis=1) for b in blocks], axis=1))
        labels.append("/".join(f"{p:g}" for p in frames["PSPI"]))
    fig, ax = plt.subplots(figsize=(12, 1.6 * len(rows)))
    ax.imshow(np.concatenate(rows, axis=0))
    ax.set_title(
        "source frames | " + " | ".join(arms) + "   (PSPI per row: " + "; ".join(labels) + ")",
        fontsize=9,
    )
    ax.axis("off")
    save_figure(fig, Path(figures_dir) / "augment_samples.png")
    return fig


ARM_COLOURS = {
    "real": "black",
    "paincontrol": "tab:red",
    "warp": "tab:blue",
    "classic": "tab:green",
}


def scarcity_figure(result: AugmentResult, figures_dir):
    """AUC and PSPI correlation against the number of people with real pain frames, per arm
    (mean over seeds, band = 95 % t-interval), one column per detector."""
    import matplotlib.pyplot as plt

    summary = result.summary
    detectors = sorted(summary["detector"].unique())
    fig, axes = plt.subplots(2, len(detectors), figsize=(5.5 * len(detectors), 7), squeeze=False)
    for j, detector in enumerate(detectors):
        for i, metric in enumerate(("auc", "pcc")):
            ax = axes[i, j]
            for arm, group in summary[summary["detector"] == detector].groupby("arm"):
                group = group.sort_values("level")
                colour = ARM_COLOURS.get(arm)
                ax.plot(group["level"], group[f"{metric}_mean"], "o-", color=colour, label=arm)
                ax.fill_between(
                    group["level"],
                    group[f"{metric}_ci_low"],
                    group[f"{metric}_ci_high"],
                    color=colour,
                    alpha=0.15,
                )
            ax.set_xscale("log", base=2)
            ax.set_xlabel("training people with real pain frames")
            ax.set_ylabel({"auc": "pain AUC", "pcc": "PSPI Pearson r"}[metric])
            ax.set_title(f"{detector} detector", fontsize=10)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, Path(figures_dir) / "augment_scarcity.png")
    return fig


def mixed_summary(result: AugmentResult, augment: dict):
    fit = result.mixed[augment["primary_detector"]]
    return fit.summary() if fit is not None else "not estimable (fewer than two seeds or arms)"
