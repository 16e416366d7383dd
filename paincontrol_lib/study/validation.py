"""Is the analysis a sound instrument? Simulated panels with known effects, many times over.

The default run has no human raters, so its ratings are simulated, and a simulated contrast is
an assumption, not a finding. What a simulation *can* show is whether the analysis would tell
the truth: the same trial set is rated by ``n_replications`` independent simulated panels in
which every condition is equally realistic (null effects), and the ordinal model is fitted to
each panel. A sound analysis rejects "no difference" in about ``alpha`` of the comparisons
(false-positive rate) and its 95 % intervals cover the true effect in about 95 % of them
(coverage). An opt-in run with effects (``study.validation.power_effects``) measures power: how
often the analysis detects an effect of the size asked for.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from paincontrol_lib.study.analysis import effects, first_showings, ordinal_model
from paincontrol_lib.study.design import REAL
from paincontrol_lib.study.simulate import simulate_ratings


def replicate(
    trials,
    key,
    simulate: dict,
    true_effects: dict[str, float],
    n_replications: int,
    seed: int,
    max_attention_failures: int,
    reference: str = REAL,
) -> pd.DataFrame:
    """One row per (replication, compared condition): the true effect, the estimate, its 95 %
    interval and p-value. Replication ``r`` is its own simulated panel (stream keys seed, r)."""
    rows = []
    for r in range(n_replications):
        settings = simulate | {"effects": true_effects}
        ratings = simulate_ratings(trials, key, seed=seed, replication=r, **settings)
        first = first_showings(ratings, max_attention_failures)[2]
        fit = ordinal_model(first, reference)
        for row in effects(fit, first["method"].unique(), reference).itertuples(index=False):
            if row.method == reference:
                continue
            truth = true_effects[row.method] - true_effects.get(reference, 0.0)
            rows.append(
                {
                    "replication": r,
                    "method": row.method,
                    "true": truth,
                    "estimate": row.coef,
                    "ci_low": row.lo,
                    "ci_high": row.hi,
                    "p": row.p,
                }
            )
    return pd.DataFrame(rows)


def summarise(replications: pd.DataFrame, alpha: float = 0.05) -> dict:
    """False-positive rate (comparisons whose true effect is 0), coverage of the 95 %
    intervals (all comparisons) and power (comparisons with an effect; None without)."""
    rejected = replications["p"] < alpha
    covered = (replications["ci_low"] <= replications["true"]) & (
        replications["true"] <= replications["ci_high"]
    )
    null = np.isclose(replications["true"], 0.0)
    return {
        "n_replications": int(replications["replication"].nunique()),
        "n_comparisons": int(len(replications)),
        "alpha": alpha,
        "false_positive_rate": float(rejected[null].mean()) if null.any() else None,
        "ci_coverage": float(covered.mean()),
        "power": float(rejected[~null].mean()) if (~null).any() else None,
        "mean_estimate": replications.groupby("method")["estimate"].mean().to_dict(),
    }
