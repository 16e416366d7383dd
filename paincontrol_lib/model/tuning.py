"""Choose the sampler on validation people, never on the people the final numbers are about.

Every sampler setting that is tried (``params.yaml: tune.grid`` over the ``sampler`` section) is
scored on the same seeded rows of the *validation* people, with stage 02's held-out scorer. The
rule: the highest identity top-1 (read by the in-domain identity encoder) against an unseen
frame among the settings whose expression amplitude keeps at least ``min_amplitude_ratio`` of the
ground truth's (the mean over eye opening, mouth opening and brow height of the slope of detected
on requested, each divided by the same slope measured on the ground-truth frames); ties go to the
lower NME. Amplitude is in the
rule because a sampler that copies the start photo keeps identity perfectly and moves nothing.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np

from paincontrol_lib.model.heldout import (
    IdentityScorer,
    evaluate_model,
    ground_truth_images,
    pick_rows,
    score_images,
)
from paincontrol_lib.model.sampler import SamplerConfig

RULE = (
    "maximise identity top-1 against an unseen frame subject to amplitude ratio >= {min} "
    "(mean over eye/mouth/brow of slope / ground-truth slope); ties: lower NME"
)


def require_split(examples, split: str) -> None:
    """Fail unless every row of ``examples`` belongs to ``split`` (tuning reads ``val`` only, the
    final scorer ``test`` only)."""
    found = set(examples.table["split"])
    if found != {split}:
        raise ValueError(f"expected {split!r} people only, got splits {sorted(found)}")


def amplitude_ratio(slopes: dict, ceiling: dict) -> float | None:
    ratios = [
        slopes[k] / ceiling[k] for k in ceiling if slopes.get(k) is not None and ceiling.get(k)
    ]
    return float(np.mean(ratios)) if ratios else None


def grid_settings(grid: dict) -> list[dict]:
    """Every combination of the grid's values, in a fixed order."""
    unknown = set(grid) - set(SamplerConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"tune.grid has unknown sampler settings {sorted(unknown)}")
    names = sorted(grid)
    return [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(grid[n] for n in names))
    ]


def select(grid_rows: list[dict], min_ratio: float) -> tuple[dict, bool]:
    """The winning row by the rule, and whether any setting met the amplitude bar (if none did,
    the setting with the most amplitude wins)."""
    ok = [
        r
        for r in grid_rows
        if r["amplitude_ratio"] is not None
        and r["amplitude_ratio"] >= min_ratio
        and r["identity_top1"] is not None
    ]
    if ok:
        return max(ok, key=lambda r: (r["identity_top1"], -(r["nme"] or np.inf))), True
    return max(grid_rows, key=lambda r: r["amplitude_ratio"] or -np.inf), False


def tune_sampler(
    model, examples, base: SamplerConfig, tune: dict, seed: int, mesher=None, identity=None
) -> dict:
    """Score every grid setting on validation ``examples``; returns ``tuning.json``. Identity is
    read by ``identity`` (default: the in-domain encoder, never the dlib embedding the model is
    conditioned on)."""
    require_split(examples, "val")
    rows = pick_rows(examples, tune["n_samples"], seed)
    identity = identity or IdentityScorer.of(examples)
    scorer = {"mesher": mesher, "identity": identity}
    ceiling = score_images(ground_truth_images(examples, rows), examples, rows, **scorer)
    grid_rows = []
    for settings in grid_settings(tune["grid"]):
        config = replace(base, **settings)
        scores, _ = evaluate_model(model, examples, rows, config, seed=seed, **scorer)
        grid_rows.append(
            {
                "settings": settings,
                "identity_top1": scores.get("identity_top1"),
                "identity_top1_identity_photo": scores.get("identity_top1_identity_photo"),
                "nme": scores.get("nme"),
                "detection_rate": scores["detection_rate"],
                "tracking_slope": scores.get("tracking_slope"),
                "amplitude_ratio": amplitude_ratio(
                    scores.get("tracking_slope") or {}, ceiling.get("tracking_slope") or {}
                ),
            }
        )
    best, met = select(grid_rows, tune["min_amplitude_ratio"])
    return {
        "split": "val",
        "n_people": int(examples.table["subject"].nunique()),
        "n_samples": int(len(rows)),
        "rule": RULE.format(min=tune["min_amplitude_ratio"]),
        "rule_met": met,
        "identity_scorer": identity.label,
        "ground_truth_slopes": ceiling.get("tracking_slope"),
        "grid": grid_rows,
        "selected": replace(base, **best["settings"]).as_dict(),
    }
