"""The statistics every stage uses, in one place: confidence intervals, agreement, multiple
testing, paired tests and mixed models.

This is a bottom-layer module: it imports only numpy, pandas, scipy and statsmodels (scipy and
statsmodels lazily, inside the functions that need them), never another ``paincontrol_lib``
module, so any stage or analysis can use it.

- intervals: :func:`bootstrap_ci` (percentile bootstrap of a mean), :func:`cluster_bootstrap_ci`
  (whole clusters, e.g. people, resampled), :func:`t_interval` (t-based, over seeds),
  :func:`wilson_interval` (a proportion);
- agreement: :func:`icc_3_1` and :func:`icc_3_1_ci` (two-way mixed, consistency, single rater);
- multiple testing: :func:`holm`;
- paired tests: :func:`paired_wilcoxon`, :func:`paired_t`;
- mixed models: :func:`mixed_model` (statsmodels ``MixedLM``) and :func:`crossed_mixed_model`
  (crossed random intercepts, e.g. rater and image, or source and target person).

Missing values: every function drops NaNs (and, where stated, ``None``) before computing.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

# ----------------------------------------------------------------------------- intervals


def bootstrap_ci(values, n_boot: int = 1000, seed: int = 0, level: float = 0.95):
    """Mean and percentile bootstrap CI of ``values`` (NaNs dropped): ``(mean, lo, hi)``, all
    NaN when no value is left. Observations are resampled independently; when they come in
    correlated clusters (several frames of one person) use :func:`cluster_bootstrap_ci`."""
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return np.nan, np.nan, np.nan
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (n_boot, len(x)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(x.mean()), float(lo), float(hi)


def cluster_bootstrap_ci(values, groups, n_boot: int = 1000, seed: int = 0, level: float = 0.95):
    """Mean and percentile cluster-bootstrap CI: ``(mean, lo, hi)``.

    Whole clusters (``groups``, one label per value, e.g. the person) are resampled with
    replacement; each replicate's statistic is the mean over all observations of the clusters
    drawn (so a cluster counts by its size, like in the plain mean). Values that are NaN are
    dropped first, with their labels. All NaN when no value is left.
    """
    x = np.asarray(values, float)
    labels = np.asarray(groups)
    if x.shape != labels.shape or x.ndim != 1:
        raise ValueError(f"values {x.shape} and groups {labels.shape} must be 1-D and match")
    ok = np.isfinite(x)
    x, labels = x[ok], labels[ok]
    if len(x) == 0:
        return np.nan, np.nan, np.nan
    _, cluster = np.unique(labels, return_inverse=True)
    sums = np.bincount(cluster, weights=x)
    sizes = np.bincount(cluster).astype(float)
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(sums), (n_boot, len(sums)))
    means = sums[drawn].sum(1) / sizes[drawn].sum(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(x.mean()), float(lo), float(hi)


def t_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and t-based confidence interval over seeds (NaNs and ``None`` dropped); the interval
    is NaN with fewer than two values."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    if len(v) == 1:
        return float(v[0]), math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


def wilson_interval(successes, n, level: float = 0.95) -> tuple[float, float, float]:
    """A proportion and its Wilson score interval (e.g. identity top-1 accuracy): ``(p, lo,
    hi)``; all NaN when ``n`` is 0. Same as statsmodels' ``proportion_confint(method="wilson")``."""
    from scipy import stats

    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return math.nan, math.nan, math.nan
    p = successes / n
    z = stats.norm.ppf(0.5 + level / 2)
    denominator = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denominator
    return float(p), float(max(0.0, centre - half)), float(min(1.0, centre + half))


# ----------------------------------------------------------------------------- agreement


def _icc_anova(truth, estimate):
    """``(n, k, MS rows, MS error)`` of the two-way ANOVA of complete (truth, estimate) pairs;
    None with fewer than 3 pairs."""
    x = np.column_stack([truth, estimate]).astype(float)
    x = x[np.isfinite(x).all(1)]
    n, k = x.shape
    if n < 3:
        return None
    grand = x.mean()
    ss_rows = k * ((x.mean(1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(0) - grand) ** 2).sum()
    ss_err = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    return n, k, ss_rows / (n - 1), ss_err / ((n - 1) * (k - 1))


def icc_3_1(truth: np.ndarray, estimate: np.ndarray) -> float | None:
    """ICC(3,1) (two-way mixed, consistency, single rater) of two ratings of the same targets;
    pairs with a NaN are dropped. None with fewer than 3 pairs or no variance at all."""
    anova = _icc_anova(truth, estimate)
    if anova is None:
        return None
    _, k, ms_rows, ms_err = anova
    if ms_rows + (k - 1) * ms_err == 0:
        return None
    return float((ms_rows - ms_err) / (ms_rows + (k - 1) * ms_err))


def icc_3_1_ci(truth: np.ndarray, estimate: np.ndarray, level: float = 0.95):
    """ICC(3,1) with its F-based confidence interval (McGraw & Wong 1996, case 3, consistency,
    single measure): ``(icc, lo, hi)``, or None where :func:`icc_3_1` is None.

    With ``F = MS rows / MS error`` on ``(n - 1, (n - 1)(k - 1))`` degrees of freedom,
    ``F_L = F / F_{1-a/2}(df1, df2)``, ``F_U = F * F_{1-a/2}(df2, df1)`` and the bounds are
    ``(F_L - 1) / (F_L + k - 1)`` and ``(F_U - 1) / (F_U + k - 1)``. Perfect consistency (no
    error variance) gives ``(1, 1, 1)``.
    """
    from scipy import stats

    icc = icc_3_1(truth, estimate)
    if icc is None:
        return None
    n, k, ms_rows, ms_err = _icc_anova(truth, estimate)
    if ms_err == 0:
        return icc, 1.0, 1.0
    df1, df2 = n - 1, (n - 1) * (k - 1)
    q = 0.5 + level / 2
    f = ms_rows / ms_err
    f_low, f_high = f / stats.f.ppf(q, df1, df2), f * stats.f.ppf(q, df2, df1)
    return icc, float((f_low - 1) / (f_low + k - 1)), float((f_high - 1) / (f_high + k - 1))


# ----------------------------------------------------------------------------- tests


def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels' ``multipletests``); NaNs, from tests that could not
    be run, are left out of the family and stay NaN."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, float)
    adjusted = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        adjusted[ok] = multipletests(p[ok], method="holm")[1]
    return adjusted


def paired_wilcoxon(a, b) -> float:
    """p-value of scipy's Wilcoxon signed-rank test of paired samples ``a`` and ``b`` (its
    defaults: two-sided, zero differences dropped). The caller drops incomplete pairs."""
    from scipy.stats import wilcoxon

    return float(wilcoxon(a, b).pvalue)


def paired_t(differences) -> float:
    """p-value of the one-sample t-test of paired ``differences`` against 0 (NaNs dropped);
    NaN with fewer than two pairs or a sample standard deviation of 0 (pandas' ``std``: equal
    differences whose mean is not exact, e.g. 0.2, can leave a rounding-error spread and get a
    p-value)."""
    from scipy import stats

    diff = pd.Series(differences, dtype=float).dropna()
    if len(diff) > 1 and diff.std() > 0:
        return float(stats.ttest_1samp(diff, 0).pvalue)
    return math.nan


# ----------------------------------------------------------------------------- mixed models


def mixed_model(formula: str, data: pd.DataFrame, groups, vc_formula=None, re_formula=None):
    """statsmodels ``MixedLM`` of ``formula`` fitted (REML, its defaults) with its warnings
    (convergence, boundary) silenced; None when it cannot be fitted (a singular design).

    ``groups`` is a column name of ``data`` or one label per row: a random intercept per group
    (``re_formula`` adds random slopes). ``vc_formula`` maps names to variance-component
    formulas within the groups; :func:`crossed_mixed_model` uses it for crossed effects.
    """
    import statsmodels.formula.api as smf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = smf.mixedlm(
                formula, data, groups=groups, vc_formula=vc_formula, re_formula=re_formula
            )
            return model.fit()
        except (ValueError, np.linalg.LinAlgError):
            return None


ALL = "_all"  # the one group spanning all rows that crossed random effects are nested in


def crossed_mixed_model(formula: str, data: pd.DataFrame, factors: Sequence[str] | Mapping):
    """``formula`` with crossed random intercepts, one per level of each factor (e.g. source and
    target person, or rater and image); None when it cannot be fitted.

    statsmodels' idiom: one group spanning all the data (a constant column) and one variance
    component per factor, ``vc_formula={"source": "0 + C(source)", "target": "0 + C(target)"}``.
    ``factors`` is a list of column names, or a mapping of component name to column name. The
    fit reports each factor's variance as ``"<name> Var"``.
    """
    columns = dict(factors) if isinstance(factors, Mapping) else {f: f for f in factors}
    if not columns:
        raise ValueError("crossed_mixed_model needs at least one factor")
    vc_formula = {name: f"0 + C({column})" for name, column in columns.items()}
    return mixed_model(formula, data.assign(**{ALL: 1}), groups=ALL, vc_formula=vc_formula)
