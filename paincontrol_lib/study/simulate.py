"""SIMULATED raters, so the study's analysis runs end to end before anyone has rated anything.

Model (a cumulative-logit rater, the model the analysis fits; every number is a parameter):

- each rater slot of the trial set is one simulated rater; a fraction ``inattentive_fraction``
  is inattentive and answers every trial, attention checks included, uniformly at random;
- an attentive rater answers an attention check as instructed, and rates an item from the latent
  realism ``effects[method] + item effect + rater effect + logistic noise`` (item effect
  ~ N(0, ``item_sd``), one per image; rater effect ~ N(0, ``rater_sd``), leniency), cut by
  ``thresholds`` into 1-5; a repeated item gets fresh noise at its second showing;
- the optional pain intensity is the item's PSPI mapped to 0-10 plus N(0, ``pain_sd``), rounded
  (inattentive raters: uniform 0-10; attention checks: none).

``effects`` are log-odds of a higher rating, conditional on rater and item: the quantity the
analysis's ordinal model with rater terms estimates, so its estimates can be checked against
them. Output has the columns of ``paincontrol study export`` plus ``simulated`` and
``sim_inattentive`` (the truth the attention checks should find).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from paincontrol_lib.seeds import stream


def simulate_ratings(
    trials: pd.DataFrame,
    key: pd.DataFrame,
    *,
    effects: dict[str, float],
    thresholds: list[float],
    rater_sd: float,
    item_sd: float,
    inattentive_fraction: float,
    pain_sd: float,
    seed: int,
    replication: int | None = None,
) -> pd.DataFrame:
    """One simulated answer to every trial of every rater slot (columns as an export).
    ``replication`` numbers independent panels of the same design (instrument validation)."""
    methods = set(key.loc[key["kind"] == "item", "method"])
    missing = methods - set(effects)
    if missing:
        raise ValueError(f"study.simulate.effects has no effect for {sorted(missing)}")
    cuts = np.asarray(thresholds, float)
    if len(cuts) != 4 or np.any(np.diff(cuts) <= 0):
        raise ValueError(f"study.simulate.thresholds must be 4 increasing cut points, got {cuts}")
    if not 0 <= inattentive_fraction < 1:
        raise ValueError("study.simulate.inattentive_fraction must be in [0, 1)")
    keys = (seed,) if replication is None else (seed, replication)
    rng = stream("rater_simulation", *keys)
    data = trials.merge(key, on="image_id", how="left", validate="many_to_one")
    item_effect = dict(zip(key["image_id"], rng.normal(0, item_sd, len(key)), strict=True))
    slots = np.sort(data["slot"].unique())
    n_bad = int(round(inattentive_fraction * len(slots)))
    inattentive = set(rng.choice(slots, n_bad, replace=False).tolist())
    rater_effect = dict(zip(slots, rng.normal(0, rater_sd, len(slots)), strict=True))

    n = len(data)
    is_item = (data["kind"] == "item").to_numpy()
    careless = data["slot"].isin(inattentive).to_numpy()
    latent = (data["method"].map(effects).fillna(0.0).to_numpy()
              + data["image_id"].map(item_effect).to_numpy()
              + data["slot"].map(rater_effect).to_numpy()
              + rng.logistic(size=n))  # fmt: skip
    realism = 1 + (latent[:, None] > cuts).sum(1)
    realism = np.where(is_item, realism, data["expected"].fillna(1).to_numpy())
    realism = np.where(careless, rng.integers(1, 6, n), realism)
    pain = np.rint(data["pspi"].to_numpy(float) * 10 / 16 + rng.normal(0, pain_sd, n))
    pain = np.where(careless, rng.integers(0, 11, n), np.clip(pain, 0, 10))
    pain = np.where(is_item, pain, np.nan)
    out = pd.DataFrame({
        "rater": [f"simulated-{s:03d}" for s in data["slot"]],
        "slot": data["slot"], "position": data["position"], "image_id": data["image_id"],
        "showing": data["showing"], "realism": realism.astype(int), "pain": pain,
        "kind": data["kind"], "method": data["method"], "identity": data["identity"],
        "pspi": data["pspi"], "expected": data["expected"],
        "simulated": True, "sim_inattentive": careless,
    })  # fmt: skip
    out = out.sort_values(["slot", "position"], ignore_index=True)
    out.attrs["true_effects"] = {m: float(effects[m]) for m in sorted(methods)}
    return out
