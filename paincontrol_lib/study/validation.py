"""Is the analysis a sound instrument? Simulated panels with known effects, many times over.

The default run has no human raters, so its ratings are simulated, and a simulated contrast is
an assumption, not a finding. What a simulation *can* show is whether the analysis would tell
the truth: the same trial set is rated by many independent simulated panels and the ordinal
model is fitted to each. Two checks, each with a Monte Carlo interval (panels are finite):

- null panels (every condition equally realistic): the analysis should reject "no
  difference" in about ``alpha`` of the comparisons (its false-positive rate);
- effect panels (``study.validation.power_effects``, the truth known): its 95 % intervals
  should cover the true effects in about 95 % of the comparisons, and how often it detects them
  is its power at those effects and this panel size. (Under null effects coverage is 1 minus
  the false-positive rate, so only the effect panels check coverage independently.)

Comparisons of one panel share its raters and reference images, so they are not independent:
the Monte Carlo intervals count panels, not comparisons (:func:`panel_rate`). A panel whose
ordinal fit fails or does not converge is counted and named, never dropped silently.
An opt-in power table (``study.validation.power_table``) repeats the effect panels over effect
sizes and panel sizes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from paincontrol_lib.stats import FitError, wilson_interval
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
    first: int = 0,
    workers: int = 1,
) -> tuple[pd.DataFrame, list[dict]]:
    """``(rows, failures)``: one row per (replication, compared condition) with the true effect,
    the estimate, its 95 % interval and p-value; one failure (replication, reason) per panel
    whose fit failed. Replications are numbered from ``first``; replication ``r`` is its own
    simulated panel (stream keys seed, r), so distinct numbers give independent panels, and
    splitting them over ``workers`` processes changes nothing but the time."""
    job = (trials, key, simulate, true_effects, seed, max_attention_failures, reference)
    bounds = np.linspace(first, first + n_replications, max(1, workers) + 1).round().astype(int)
    ranges = [(job, int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    if len(ranges) > 1:
        from paincontrol_lib.parallel import process_pool

        with process_pool(len(ranges)) as pool:
            parts = list(pool.map(_replicate_range, ranges))
    else:
        parts = [_replicate_range(r) for r in ranges]
    rows = [row for part in parts for row in part[0]]
    failures = [failure for part in parts for failure in part[1]]
    columns = ["replication", "method", "true", "estimate", "ci_low", "ci_high", "p"]
    return pd.DataFrame(rows, columns=columns), failures


def _replicate_range(task) -> tuple[list[dict], list[dict]]:
    """Rows and failures of replications ``[start, stop)`` (module level: workers pickle it)."""
    (trials, key, simulate, true_effects, seed, max_attention_failures, reference), start, stop = (
        task
    )
    rows, failures = [], []
    settings = simulate | {"effects": true_effects}
    for r in range(start, stop):
        ratings = simulate_ratings(trials, key, seed=seed, replication=r, **settings)
        kept = first_showings(ratings, max_attention_failures)[2]
        try:
            fit = ordinal_model(kept, reference)
        except FitError as error:
            failures.append({"replication": r, "reason": str(error)})
            continue
        for row in effects(fit, kept["method"].unique(), reference).itertuples(index=False):
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
    return rows, failures


def panel_rate(flags, panels, level: float = 0.95) -> dict:
    """A rate over comparisons that come in correlated panels, with a Wilson interval at the
    effective number of comparisons (Kish's design effect from the spread of the panels'
    counts: ``n / deff``, ``deff >= 1``): ``{rate, mc_ci_low, mc_ci_high, mc_half_width, n,
    n_panels, design_effect}``; the rate is None without comparisons."""
    frame = pd.DataFrame({"flag": np.asarray(flags, float), "panel": np.asarray(panels)})
    n = len(frame)
    if n == 0:
        return {"rate": None, "n": 0, "n_panels": 0}
    rate = float(frame["flag"].mean())
    counts = frame.groupby("panel")["flag"].agg(["sum", "size"])
    per_panel = float(counts["size"].mean())
    spread = float(((counts["sum"] - counts["size"] * rate) ** 2).sum() / max(1, len(counts) - 1))
    binomial = per_panel * rate * (1 - rate)
    deff = max(1.0, spread / binomial) if binomial > 0 else 1.0
    effective = n / deff
    _, low, high = wilson_interval(rate * effective, effective, level)
    return {"rate": rate, "mc_ci_low": low, "mc_ci_high": high,
            "mc_half_width": (high - low) / 2, "n": n, "n_panels": len(counts),
            "design_effect": deff}  # fmt: skip


def summarise(replications: pd.DataFrame, alpha: float = 0.05) -> dict:
    """Null panels (``true`` = 0): the false-positive rate; effect panels: coverage of the
    true effects and power; each with its Monte Carlo interval over panels
    (:func:`panel_rate`). ``false_positive_rate``, ``ci_coverage`` and ``power`` are the rates
    themselves (None where no comparison of that kind was simulated)."""
    rejected = replications["p"] < alpha
    covered = (replications["ci_low"] <= replications["true"]) & (
        replications["true"] <= replications["ci_high"]
    )
    null = np.isclose(replications["true"], 0.0)
    panel = replications["replication"]
    fpr = panel_rate(rejected[null], panel[null])
    coverage = panel_rate(covered, panel)
    power = panel_rate(rejected[~null], panel[~null])
    return {
        "n_replications": int(panel.nunique()),
        "n_comparisons": int(len(replications)),
        "alpha": alpha,
        "false_positive_rate": fpr["rate"],
        "false_positive_rate_mc": fpr,
        "ci_coverage": coverage["rate"],
        "ci_coverage_mc": coverage,
        "power": power["rate"],
        "power_mc": power,
        "mean_estimate": replications.groupby("method")["estimate"].mean().to_dict(),
    }


def larger_panel(trials: pd.DataFrame, n_raters: int) -> pd.DataFrame:
    """The trial set with ``n_raters`` rater slots, a multiple of its own: each copy of a slot
    rates the same trials (orders repeat; the simulator ignores order)."""
    slots = np.sort(trials["slot"].unique())
    if n_raters % len(slots):
        raise ValueError(f"study.validation.power_table: panel size {n_raters} is not a multiple "
                         f"of the trial set's {len(slots)} rater slots")  # fmt: skip
    return pd.concat([trials.assign(slot=trials["slot"] + k * (slots.max() + 1))
                      for k in range(n_raters // len(slots))], ignore_index=True)  # fmt: skip


def power_table(trials, key, simulate: dict, conditions, table: dict, seed: int,
                max_attention_failures: int, reference: str = REAL, first: int = 0,
                workers: int = 1):  # fmt: skip
    """Power and coverage per (effect size, panel size): ``table["n_panels"]`` panels each,
    every non-reference condition at the effect size (log-odds vs ``reference``).
    ``(rows, failures)``; panels are numbered from ``first`` upwards."""
    rows, failures = [], []
    for size in table["panel_sizes"]:
        panel = larger_panel(trials, size)
        for effect in table["effect_sizes"]:
            truth = {c: (0.0 if c == reference else float(effect)) for c in conditions}
            reps, failed = replicate(panel, key, simulate, truth, table["n_panels"], seed,
                                     max_attention_failures, reference, first,
                                     workers)  # fmt: skip
            first += table["n_panels"]
            failures += [f | {"effect_size": effect, "panel_size": size} for f in failed]
            summary = summarise(reps)
            rows.append({"effect_size": effect, "panel_size": size,
                         "power": summary["power_mc"], "ci_coverage": summary["ci_coverage_mc"],
                         "n_panels": table["n_panels"], "fits_failed": len(failed)})  # fmt: skip
    return rows, failures
