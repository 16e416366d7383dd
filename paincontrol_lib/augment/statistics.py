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


def claim(tests: pd.DataFrame, detector: str, arm: str = "paincontrol") -> dict:
    """The paper's claim in numbers: the arm's AUC gain over real-only at the scarcest level
    and at full data, with Holm-corrected paired p-values."""
    rows = tests[(tests["detector"] == detector) & (tests["arm"] == arm)].sort_values("level")
    if rows.empty:
        return dict.fromkeys(("scarce_gain_auc", "scarce_gain_p", "full_gain_auc", "full_gain_p"))
    scarce, full = rows.iloc[0], rows.iloc[-1]
    return {
        "detector": detector, "arm": arm,
        "scarce_level": int(scarce["level"]), "full_level": int(full["level"]),
        "scarce_gain_auc": scarce["gain"], "scarce_gain_p": scarce["p_holm"],
        "full_gain_auc": full["gain"], "full_gain_p": full["p_holm"],
    }  # fmt: skip


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
        "claim": claim(tests, primary),
        "tests": tests_of(primary),
        "detectors": {
            d: {"levels": levels_of(d), "tests": tests_of(d), "claim": claim(tests, d)}
            for d in detectors
        },  # fmt: skip
        **config,
    }
