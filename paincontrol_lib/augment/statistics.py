"""Statistics of the sweep: mean and t-interval over seeds, paired gains over real-only with
Holm's correction, the mixed model, the claim in numbers and ``augment.json``."""

from __future__ import annotations

import math

import pandas as pd

from paincontrol_lib import stats


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95 % CI over seeds of AUC, F1 and PCC per (detector, level, arm)."""
    out = []
    for (detector, level, arm), group in results.groupby(["detector", "level", "arm"], sort=True):
        row = {"detector": detector, "level": level, "arm": arm, "n_seeds": len(group)}
        for metric in ("auc", "f1", "pcc"):
            row[f"{metric}_mean"], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = (
                stats.t_interval(group[metric].astype(float))
            )
        out.append(row)
    return pd.DataFrame(out)


def arm_tests(results: pd.DataFrame, baseline: str = "real", metric: str = "auc") -> pd.DataFrame:
    """Per (detector, level, arm): mean gain over ``baseline`` and a paired t-test across seeds
    (same seed = same real pain people and detector initialisation). Holm's correction runs
    over the levels of each (detector, arm): one family per claim "this augmentation helps"."""
    out = []
    for (detector, level), group in results.groupby(["detector", "level"], sort=True):
        wide = group.pivot(index="seed", columns="arm", values=metric).astype(float)
        for arm in wide.columns.drop(baseline, errors="ignore"):
            diff = (wide[arm] - wide[baseline]).dropna()
            out.append({"detector": detector, "level": level, "arm": arm,
                        "gain": float(diff.mean()) if len(diff) else math.nan,
                        "n_pairs": len(diff), "p": stats.paired_t(diff)})  # fmt: skip
    tests = pd.DataFrame(out)
    if not tests.empty:
        tests["p_holm"] = tests.groupby(["detector", "arm"])["p"].transform(stats.holm)
    return tests


def mixed_model(results: pd.DataFrame, detector: str, metric: str = "auc"):
    """``metric ~ arm * level`` (levels and arms categorical, ``real`` the reference) with a
    random intercept per seed; None when it cannot be fitted."""
    data = results[results["detector"] == detector].dropna(subset=[metric])
    if data["seed"].nunique() < 2 or data["arm"].nunique() < 2:
        return None
    formula = f"{metric} ~ C(arm, Treatment('real')) * C(level)"
    return stats.mixed_model(formula, data, groups=data["seed"])


# The questions of the claim block: (name, arm, baseline). The first is the paper's claim; the
# second asks whether the diffusion model is needed at all (the warp is its training-free rival);
# the third is the control every augmentation paper owes.
COMPARISONS = (
    ("paincontrol_vs_real", "paincontrol", "real"),
    ("paincontrol_vs_warp", "paincontrol", "warp"),
    ("classic_vs_real", "classic", "real"),
    ("warp_vs_real", "warp", "real"),
)


def claim(results: pd.DataFrame, detector: str, metric: str = "auc") -> dict:
    """Each comparison of :data:`COMPARISONS` at each level: the mean paired AUC difference over
    seeds (same seed = same real pain people, same detector initialisation, same synthetic
    pairs), its 95 % t-interval and paired-t p, Holm-corrected over the levels of that
    comparison. ``{name: {level: {estimate, ci_low, ci_high, p, p_holm, n_seeds}}}``."""
    data = results[results["detector"] == detector]
    out = {}
    for name, arm, baseline in COMPARISONS:
        if not {arm, baseline} <= set(data["arm"]):
            continue
        rows = {}
        for level, group in data.groupby("level", sort=True):
            wide = group.pivot(index="seed", columns="arm", values=metric).astype(float)
            diff = (wide[arm] - wide[baseline]).dropna()
            estimate, low, high = stats.t_interval(diff)
            rows[str(level)] = {"estimate": estimate, "ci_low": low, "ci_high": high,
                                "p": stats.paired_t(diff), "n_seeds": len(diff)}  # fmt: skip
        adjusted = stats.holm([r["p"] for r in rows.values()])
        for row, p_holm in zip(rows.values(), adjusted, strict=True):
            row["p_holm"] = float(p_holm)
        out[name] = rows
    out["method"] = "paired t over seeds per level; Holm over the levels of each comparison"
    return out


_STATS = ("_mean", "_ci_low", "_ci_high", "n_seeds")


def metrics_json(summary, tests, results, primary: str, config: dict) -> dict:
    """``reports/metrics/augment.json`` (numpy and NaN are cleaned by ``io.write_json``): the
    primary detector's cells under ``levels``, every detector under ``detectors``, the paired
    tests and the claim."""

    def levels_of(detector):
        out = {}
        for row in summary[summary["detector"] == detector].itertuples(index=False):
            out.setdefault(str(row.level), {})[row.arm] = {
                key: getattr(row, key) for key in summary.columns if key.endswith(_STATS)
            }
        return out

    def tests_of(detector):
        out = {}
        for row in tests[tests["detector"] == detector].itertuples(index=False):
            out.setdefault(str(row.level), {})[row.arm] = {
                "gain_auc": row.gain,
                "p": row.p,
                "p_holm": row.p_holm,
            }
        return out

    detectors = sorted(results["detector"].unique())
    return {
        "primary_detector": primary,
        "levels": levels_of(primary),
        "claim": claim(results, primary),
        "tests": tests_of(primary),
        "detectors": {
            d: {"levels": levels_of(d), "tests": tests_of(d), "claim": claim(results, d)}
            for d in detectors
        },  # fmt: skip
        **config,
    }
