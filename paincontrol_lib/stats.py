"""The statistics every stage uses, in one place: confidence intervals, agreement, multiple
testing, paired tests and mixed models.

This is a bottom-layer module: it imports only numpy, pandas, scipy and statsmodels (scipy and
statsmodels lazily, inside the functions that need them), never another ``paincontrol_lib``
module, so any stage or analysis can use it.

- intervals: :func:`bootstrap_ci` (percentile bootstrap of a mean), :func:`cluster_bootstrap_ci`
  (whole clusters, e.g. people, resampled), :func:`t_interval` (t-based, over seeds),
  :func:`wilson_interval` (a proportion);
- agreement: :func:`icc_3_1` and :func:`icc_3_1_ci` (two-way mixed, consistency, single rater),
  :func:`icc_2_1` (two-way random, absolute agreement), :func:`cluster_bootstrap_statistic` (any
  statistic, e.g. an ICC, with whole clusters such as people resampled);
- multiple testing: :func:`holm` (refuses NaNs: a family is complete or named smaller);
- paired tests: :func:`paired_wilcoxon`, :func:`paired_t`;
- mixed models: :func:`mixed_model` (statsmodels ``MixedLM``) and :func:`crossed_mixed_model`
  (crossed random intercepts, e.g. rater and image, or source and target person); a failed or
  non-converged fit raises :class:`FitError`;
- crossed designs (sources x targets x requests, stage 04): :func:`two_way_cluster_ci`, the
  inference the stage uses, the candidates it was chosen from (:data:`DIFFERENCE_TESTS`,
  :data:`MEAN_INTERVALS`), a simulator of the design (:func:`crossed_design`,
  :func:`simulate_crossed`) and :func:`check_inference`, which measures each candidate's
  false-positive rate and coverage on simulated data with known effects.

Missing values: every function drops NaNs (and, where stated, ``None``) before computing,
except :func:`holm`.
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


def icc_2_1(*ratings) -> float | None:
    """ICC(2,1) (two-way random, absolute agreement, single rater; Shrout & Fleiss 1979, McGraw
    & Wong's ICC(A,1)) of k >= 2 ratings of the same targets, e.g. truth and an estimate.
    Unlike :func:`icc_3_1` a reader's constant bias lowers it: agreement, not consistency.
    Targets with a NaN rating are dropped; None with fewer than 3 left or no variance at all."""
    if len(ratings) < 2:
        raise ValueError(f"ICC(2,1) needs at least 2 ratings of each target, got {len(ratings)}")
    x = np.column_stack(ratings).astype(float)
    x = x[np.isfinite(x).all(1)]
    n, k = x.shape
    if n < 3:
        return None
    grand = x.mean()
    ss_rows = k * ((x.mean(1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(0) - grand) ** 2).sum()
    ss_err = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    ms_rows, ms_cols = ss_rows / (n - 1), ss_cols / (k - 1)
    ms_err = ss_err / ((n - 1) * (k - 1))
    denominator = ms_rows + (k - 1) * ms_err + k * (ms_cols - ms_err) / n
    if denominator == 0:
        return None
    return float((ms_rows - ms_err) / denominator)


def cluster_bootstrap_statistic(statistic, groups, *arrays, n_boot: int = 1000, seed: int = 0,
                                level: float = 0.95):  # fmt: skip
    """Any statistic of row-aligned ``arrays`` with a percentile CI from resampling whole
    clusters (``groups``: one label per row, e.g. the person) with replacement, so that frames
    of one person are not counted as independent evidence: ``(estimate, lo, hi)``.

    Each replicate stacks every row of the clusters drawn (a cluster drawn twice counts twice)
    and calls ``statistic(*arrays)``; replicates where it is None or NaN are left out. The
    estimate is the statistic on all rows (NaN if None); the bounds are NaN with fewer than two
    clusters or fewer than half the replicates usable."""
    labels = np.asarray(groups)
    arrays = [np.asarray(a) for a in arrays]
    if any(len(a) != len(labels) for a in arrays):
        raise ValueError(f"arrays of {[len(a) for a in arrays]} rows for {len(labels)} labels")

    def value(*columns) -> float:
        result = statistic(*columns)
        return np.nan if result is None else float(result)

    estimate = value(*arrays)
    _, cluster = np.unique(labels, return_inverse=True)
    members = [np.flatnonzero(cluster == c) for c in range(cluster.max() + 1 if len(labels) else 0)]
    if len(members) < 2:
        return estimate, np.nan, np.nan
    rng = np.random.default_rng(seed)
    replicates = []
    for drawn in rng.integers(0, len(members), (n_boot, len(members))):
        rows = np.concatenate([members[c] for c in drawn])
        replicates.append(value(*(a[rows] for a in arrays)))
    replicates = np.asarray(replicates)
    replicates = replicates[np.isfinite(replicates)]
    if len(replicates) < n_boot / 2:
        return estimate, np.nan, np.nan
    lo, hi = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    return estimate, float(lo), float(hi)


# ----------------------------------------------------------------------------- tests


def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels' ``multipletests``) over the whole family given.

    A NaN (a test that could not be run) is refused, not dropped: dropping it would quietly
    shrink the family and make every other adjusted p smaller. Declare the family without it."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, float)
    bad = np.flatnonzero(~np.isfinite(p))
    if len(bad):
        raise ValueError(
            f"holm: p-values at positions {bad.tolist()} of {len(p)} are not finite; leave a "
            "test that could not be run out of the family by name"
        )
    return multipletests(p, method="holm")[1] if len(p) else p


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


class FitError(RuntimeError):
    """A model that could not be fitted, or whose fit did not converge; the message names the
    model and the reason. Callers count and name these (``fits_failed`` in the metrics) and fail
    unless a parameter allows failures: a failed fit is never a silently missing number."""


def mixed_model(formula: str, data: pd.DataFrame, groups, vc_formula=None, re_formula=None,
                optimizers: Sequence[str] | None = None):  # fmt: skip
    """statsmodels ``MixedLM`` of ``formula`` fitted (REML, its defaults; ``optimizers`` replaces
    its chain of optimisers, each starting where the last stopped).

    Raises :class:`FitError` when it cannot be fitted (a singular design), when the optimiser
    did not converge, or when a fixed effect has no finite standard error. A variance component
    estimated at zero (statsmodels' boundary warning) is a valid fit; that and any other warning
    are kept in the result's ``fit_warnings``.

    ``groups`` is a column name of ``data`` or one label per row: a random intercept per group
    (``re_formula`` adds random slopes). ``vc_formula`` maps names to variance-component
    formulas within the groups; :func:`crossed_mixed_model` uses it for crossed effects.
    """
    import statsmodels.formula.api as smf

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = smf.mixedlm(
                formula, data, groups=groups, vc_formula=vc_formula, re_formula=re_formula
            )
            fit = model.fit(method=list(optimizers)) if optimizers else model.fit()
            finite = np.isfinite(np.asarray(fit.bse_fe, float)).all()
        except (ValueError, np.linalg.LinAlgError) as error:
            raise FitError(f"MixedLM {formula}: cannot be fitted ({error})") from error
    said = list(dict.fromkeys(str(w.message) for w in caught))
    if not fit.converged:
        raise FitError(f"MixedLM {formula}: did not converge ({'; '.join(said) or 'no reason'})")
    if not finite:
        raise FitError(f"MixedLM {formula}: fixed effects without a finite standard error")
    fit.fit_warnings = said
    return fit


ALL = "_all"  # the one group spanning all rows that crossed random effects are nested in


def crossed_mixed_model(formula: str, data: pd.DataFrame, factors: Sequence[str] | Mapping,
                        optimizers: Sequence[str] | None = None):  # fmt: skip
    """``formula`` with crossed random intercepts, one per level of each factor (e.g. source and
    target person, or rater and image); :class:`FitError` as :func:`mixed_model`.

    statsmodels' idiom: one group spanning all the data (a constant column) and one variance
    component per factor, ``vc_formula={"source": "0 + C(source)", "target": "0 + C(target)"}``.
    ``factors`` is a list of column names, or a mapping of component name to column name. The
    fit reports each factor's variance as ``"<name> Var"``.
    """
    columns = dict(factors) if isinstance(factors, Mapping) else {f: f for f in factors}
    if not columns:
        raise ValueError("crossed_mixed_model needs at least one factor")
    vc_formula = {name: f"0 + C({column})" for name, column in columns.items()}
    return mixed_model(formula, data.assign(**{ALL: 1}), groups=ALL, vc_formula=vc_formula,
                       optimizers=optimizers)  # fmt: skip


# ----------------------------------------------------------------------------- crossed designs
#
# Stage 04's design: source people's expressions put onto target people, several requests
# (frames, PSPI levels) per source-target pair, every request answered by every method. What is
# independent is people, not outputs: requests of one pair share the pair, pairs of one source
# share the source, pairs of one target share the target, and a method's advantage can differ by
# source, by target and by pair (method-by-person heterogeneity).

HETEROGENEITY = {  # standard deviations of the simulated design (:func:`simulate_crossed`)
    "source": 1.0,  # a source person's effect on every output
    "target": 1.0,  # a target person's effect on every output
    "pair": 0.3,  # a source-target pair's effect on every output
    "request": 0.5,  # a request's effect, shared by every method that answers it
    "noise": 0.5,  # each output's own noise
    "slope_source": 0.3,  # the method's advantage varies by source person
    "slope_target": 0.3,  # ... by target person
    "slope_pair": 0.2,  # ... by source-target pair
}


def two_way_cluster_ci(values, sources, targets, fixed_sources=(), level: float = 0.95) -> dict:
    """Mean of ``values`` (one per request, e.g. a method's paired difference from another) and
    its t-interval with a two-way cluster-robust variance over source and target people
    (Cameron, Gelbach & Miller 2011): ``V = V_source + V_target - V_pair``, each a cluster-robust
    variance of the mean with clusters summed over (source, target, source-target pair), scaled
    by ``G / (G - 1)``; ``max(V_source, V_target)`` where the difference is not positive. The
    t has ``min(sources, targets) - 1`` degrees of freedom.

    Sources in ``fixed_sources`` are designed requests, not sampled people (e.g. PSPI levels
    asked for directly): each of their pairs is its own source cluster and they do not count as
    sources. NaN values are dropped. Raises :class:`FitError` with fewer than 2 sampled sources
    or 2 targets. Chosen by :func:`check_inference`: nominal false-positive rate and coverage
    on simulated designs with method-by-person heterogeneity (docs/evaluation.md).
    """
    from scipy import stats

    frame = pd.DataFrame({"x": np.asarray(values, float), "s": np.asarray(sources, object),
                          "t": np.asarray(targets, object)})  # fmt: skip
    frame = frame[np.isfinite(frame["x"])]
    fixed = frame["s"].isin(list(fixed_sources))
    n_sources, n_targets = frame.loc[~fixed, "s"].nunique(), frame["t"].nunique()
    df = min(n_sources, n_targets) - 1
    if df < 1:
        raise FitError(f"{n_sources} sampled source(s) and {n_targets} target(s): a two-way "
                       "cluster interval needs at least 2 of each")  # fmt: skip
    estimate = float(frame["x"].mean())
    pairs = frame.groupby(["s", "t"], sort=False)["x"].agg(["sum", "size"]).reset_index()
    influence = (pairs["sum"] - pairs["size"] * estimate) / len(frame)
    pair = pairs["s"].astype(str) + "\x1f" + pairs["t"].astype(str)
    source = pairs["s"].astype(str).where(~pairs["s"].isin(list(fixed_sources)), pair)

    def variance(clusters) -> float:
        sums = influence.groupby(clusters.to_numpy()).sum()
        return len(sums) / (len(sums) - 1) * float((sums**2).sum()) if len(sums) > 1 else 0.0

    v_source, v_target, v_pair = variance(source), variance(pairs["t"]), variance(pair)
    v = v_source + v_target - v_pair
    se = math.sqrt(v if v > 0 else max(v_source, v_target))
    half = stats.t.ppf(0.5 + level / 2, df) * se
    if se > 0:
        p = float(2 * stats.t.sf(abs(estimate) / se, df))
    else:  # every value equal: no spread to test against
        p = 1.0 if estimate == 0 else 0.0
    return {"estimate": estimate, "ci_low": estimate - half, "ci_high": estimate + half,
            "p": p, "se": se, "df": df, "n_sources": n_sources, "n_targets": n_targets,
            "n_pairs": len(pairs), "n_requests": len(frame)}  # fmt: skip


def paired_requests(data: pd.DataFrame, method: str, baseline: str, value: str = "y"):
    """``data`` (one row per output: ``source``, ``target``, ``request``, ``method``, ``value``)
    as one row per request both methods answered: ``source``, ``target``, ``request`` and
    ``difference`` (method minus baseline). A request one of them missed (NaN) is dropped."""
    keys = ["source", "target", "request"]
    both = data[data["method"].isin([method, baseline])]
    repeated = both.duplicated([*keys, "method"])
    if repeated.any():
        raise ValueError(f"{int(repeated.sum())} requests answered twice by one method")
    wide = both.set_index([*keys, "method"])[value].astype(float).unstack("method")
    for name in (method, baseline):
        if name not in wide:
            wide[name] = np.nan
    difference = (wide[method] - wide[baseline]).rename("difference")
    return difference.dropna().reset_index()


def _two_way_cluster(data, method, baseline, fixed_sources=(), level=0.95) -> dict:
    """The chosen test: :func:`two_way_cluster_ci` of the paired differences."""
    pairs = paired_requests(data, method, baseline)
    return two_way_cluster_ci(pairs["difference"], pairs["source"], pairs["target"],
                              fixed_sources, level)  # fmt: skip


def _crossed_intercepts(data, method, baseline, fixed_sources=(), level=0.95) -> dict:
    """Stage 04 before issue 30: ``y ~ method`` on both methods' outputs with crossed random
    intercepts for source and target; every output is a replicate of the method effect."""
    both = data[data["method"].isin([method, baseline])].dropna(subset=["y"])
    term = f"C(method, Treatment({baseline!r}))"
    fit = crossed_mixed_model(f"y ~ {term}", both, ["source", "target"])
    name = next(n for n in fit.params.index if n.startswith(term))
    low, high = fit.conf_int(alpha=1 - level).loc[name]
    return {"estimate": float(fit.params[name]), "ci_low": float(low), "ci_high": float(high),
            "p": float(fit.pvalues[name])}  # fmt: skip


def _crossed_slopes(data, method, baseline, fixed_sources=(), level=0.95) -> dict:
    """A mixed model with the method's slope random by source, target and pair: the pair
    means of the paired differences (balanced requests per pair: the same model for the method
    effect) with crossed random intercepts for source and target, the pair's slope in the
    residual; Wald interval."""
    pairs = paired_requests(data, method, baseline)
    means = pairs.groupby(["source", "target"], sort=False)["difference"].mean().reset_index()
    fixed = means["source"].isin(list(fixed_sources))
    means["source"] = means["source"].where(~fixed, means["source"] + "|" + means["target"])
    fit = crossed_mixed_model("difference ~ 1", means, ["source", "target"])
    low, high = fit.conf_int(alpha=1 - level).loc["Intercept"]
    return {"estimate": float(fit.params["Intercept"]), "ci_low": float(low),
            "ci_high": float(high), "p": float(fit.pvalues["Intercept"])}  # fmt: skip


def _two_way_bootstrap(data, method, baseline, fixed_sources=(), level=0.95, n_boot=1000,
                       seed=0) -> dict:  # fmt: skip
    """The pigeonhole bootstrap (Owen 2007) of the paired differences: sampled sources and
    targets are drawn with replacement, independently, and a pair counts as often as its
    source times its target was drawn (a designed source's pairs: as often as their target);
    percentile interval, p = twice the smaller tail at 0."""
    pairs = paired_requests(data, method, baseline)
    cells = pairs.groupby(["source", "target"], sort=False)["difference"].agg(["sum", "size"])
    cells = cells.reset_index()
    sampled = sorted(set(cells["source"]) - set(fixed_sources))
    targets = sorted(set(cells["target"]))
    rng = np.random.default_rng(seed)
    source_counts = rng.multinomial(len(sampled), np.full(len(sampled), 1 / len(sampled)), n_boot)
    source_counts = np.column_stack([source_counts, np.ones(n_boot, int)])  # designed: once
    target_counts = rng.multinomial(len(targets), np.full(len(targets), 1 / len(targets)), n_boot)
    s = cells["source"].map({x: i for i, x in enumerate(sampled)}).fillna(len(sampled))
    t = cells["target"].map({x: i for i, x in enumerate(targets)})
    weight = source_counts[:, s.to_numpy(int)] * target_counts[:, t.to_numpy(int)]
    sums = (weight * cells["sum"].to_numpy()).sum(1)
    sizes = (weight * cells["size"].to_numpy()).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / sizes
    means = means[np.isfinite(means)]
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    p = min(1.0, 2 * min((means <= 0).mean(), (means >= 0).mean()))
    return {"estimate": float(pairs["difference"].mean()), "ci_low": float(low),
            "ci_high": float(high), "p": float(p)}  # fmt: skip


# Tests of a method's difference from a baseline in the crossed design: (function, what it is).
# check_inference measures each one; stage 04 uses the one that keeps its nominal rates.
DIFFERENCE_TESTS = {
    "crossed_intercepts": (_crossed_intercepts, "mixed model, crossed random intercepts for "
                           "source and target, outputs as replicates (stage 04 before issue 30)"),
    "crossed_slopes": (_crossed_slopes, "mixed model with the method slope random by source, "
                       "target and pair (pair means of paired differences), Wald interval"),
    "two_way_bootstrap": (_two_way_bootstrap, "pigeonhole two-way (source x target) cluster "
                          "bootstrap of paired differences, percentile interval"),
    "two_way_cluster": (_two_way_cluster, "paired differences, two-way (source x target) "
                        "cluster-robust variance, t on min(sources, targets) - 1 df"),
}  # fmt: skip
CHOSEN_TEST = "two_way_cluster"


def _target_bootstrap_mean(values, sources, targets, fixed_sources=(), level=0.95):
    mean, low, high = cluster_bootstrap_ci(values, targets, level=level)
    return {"estimate": mean, "ci_low": low, "ci_high": high}


def _two_way_cluster_mean(values, sources, targets, fixed_sources=(), level=0.95):
    return two_way_cluster_ci(values, sources, targets, fixed_sources, level)


# Intervals of one method's mean over the design's outputs, measured like DIFFERENCE_TESTS.
MEAN_INTERVALS = {
    "target_bootstrap": (_target_bootstrap_mean, "cluster bootstrap over target people only "
                         "(stage 04 before issue 30)"),
    "two_way_cluster": (_two_way_cluster_mean, "two-way (source x target) cluster-robust "
                        "t-interval"),
}  # fmt: skip


def crossed_design(n_sources: int, n_targets: int, targets_per_source: int,
                   requests_per_pair: int, designed_per_target: int = 0,
                   designed_source: str = "explicit") -> pd.DataFrame:  # fmt: skip
    """Stage 03's design as rows of (source, target, request): each source onto
    ``targets_per_source`` targets, dealt so every target receives about as many sources,
    ``requests_per_pair`` requests per pair, and ``designed_per_target`` requests on every
    target from ``designed_source`` (e.g. PSPI levels asked for directly)."""
    if not 1 <= targets_per_source <= n_targets:
        raise ValueError(f"targets_per_source must be in [1, {n_targets}]")
    rows = []
    for s in range(n_sources):
        for k in range(targets_per_source):
            target = (s * targets_per_source + k) % n_targets
            rows += [(f"s{s}", f"t{target}", f"s{s}>t{target}#{r}")
                     for r in range(requests_per_pair)]  # fmt: skip
    for target in range(n_targets):
        rows += [(designed_source, f"t{target}", f"{designed_source}>t{target}#{r}")
                 for r in range(designed_per_target)]  # fmt: skip
    return pd.DataFrame(rows, columns=["source", "target", "request"])


def simulate_crossed(design: pd.DataFrame, rng: np.random.Generator, effect: float = 0.0,
                     components: Mapping[str, float] = HETEROGENEITY,
                     fixed_sources=("explicit",)) -> pd.DataFrame:  # fmt: skip
    """One simulated dataset of ``design`` (:func:`crossed_design`): every request answered by
    a ``baseline`` and a ``method`` whose true mean difference is ``effect``. Output ``y`` =
    source + target + pair + request effects + ``method`` x (``effect`` + slope by source,
    target and pair) + noise, each effect normal with the standard deviation of
    ``components`` (keys of :data:`HETEROGENEITY`). Designed sources (``fixed_sources``) have
    no person effect and no slope. Rows: source, target, request, method, y."""
    unknown = set(components) ^ set(HETEROGENEITY)
    if unknown:
        raise ValueError(f"components {sorted(unknown)}: expected the keys of HETEROGENEITY")

    def draw(labels, sd, zero=()):
        levels = pd.unique(labels)
        values = pd.Series(rng.normal(0, sd, len(levels)), index=levels)
        values[values.index.isin(list(zero))] = 0.0
        return values.reindex(labels).to_numpy()

    pair = (design["source"] + "|" + design["target"]).to_numpy()
    sources, targets = design["source"].to_numpy(), design["target"].to_numpy()
    c = components
    shared = (draw(sources, c["source"], fixed_sources) + draw(targets, c["target"])
              + draw(pair, c["pair"]) + rng.normal(0, c["request"], len(design)))  # fmt: skip
    slope = (effect + draw(sources, c["slope_source"], fixed_sources)
             + draw(targets, c["slope_target"]) + draw(pair, c["slope_pair"]))  # fmt: skip
    outputs = [
        design.assign(method=name, y=shared + on * slope + rng.normal(0, c["noise"], len(design)))
        for on, name in ((0.0, "baseline"), (1.0, "method"))
    ]
    return pd.concat(outputs, ignore_index=True)


def check_inference(design: pd.DataFrame, n_datasets: int, effect: float = 0.0,
                    components: Mapping[str, float] = HETEROGENEITY, tests=None, means=None,
                    alpha: float = 0.05, seed: int = 0,
                    fixed_sources=("explicit",)) -> dict:  # fmt: skip
    """How each test of :data:`DIFFERENCE_TESTS` (or the names in ``tests``) and each interval
    of :data:`MEAN_INTERVALS` (``means``) behaves on ``n_datasets`` simulated datasets of
    ``design`` with a known ``effect``: the rate at which the level-``alpha`` test rejects "no
    difference" (its false-positive rate when ``effect`` is 0, its power otherwise) and how often
    the ``1 - alpha`` interval covers the true value (the effect; for means, the baseline's true
    mean, 0), each with a 95 % Wilson Monte Carlo interval. A fit that fails
    (:class:`FitError`) is counted and its reasons named, never dropped silently; rates are over
    the datasets it succeeded on. Dataset ``i`` is seeded by ``(seed, i)``."""
    tests = list(DIFFERENCE_TESTS) if tests is None else list(tests)
    means = list(MEAN_INTERVALS) if means is None else list(means)
    outcomes = {("test", n): [] for n in tests} | {("mean", n): [] for n in means}
    failures: dict[tuple, list[str]] = {key: [] for key in outcomes}
    level = 1 - alpha
    for i in range(n_datasets):
        data = simulate_crossed(design, np.random.default_rng([seed, i]), effect, components,
                                fixed_sources)  # fmt: skip
        base = data[data["method"] == "baseline"]
        for kind, name in outcomes:
            try:
                if kind == "test":
                    test = DIFFERENCE_TESTS[name][0]
                    result = test(data, "method", "baseline", fixed_sources, level)
                    truth, rejected = effect, result["p"] < alpha
                else:
                    interval = MEAN_INTERVALS[name][0]
                    result = interval(base["y"], base["source"], base["target"], fixed_sources,
                                      level)  # fmt: skip
                    truth, rejected = 0.0, None
            except FitError as error:
                failures[kind, name].append(str(error))
                continue
            covered = result["ci_low"] <= truth <= result["ci_high"]
            outcomes[kind, name].append((rejected, covered))

    def rate(flags) -> dict:
        count = int(np.sum(flags))
        p, low, high = wilson_interval(count, len(flags))
        return {"rate": p, "mc_ci_low": low, "mc_ci_high": high, "count": count,
                "n": len(flags)}  # fmt: skip

    out = {"difference_tests": {}, "mean_intervals": {}}
    for (kind, name), rows in outcomes.items():
        entry = {
            "description": (DIFFERENCE_TESTS if kind == "test" else MEAN_INTERVALS)[name][1],
            "coverage": rate([c for _, c in rows]),
            "fits_failed": len(failures[kind, name]),
            "failure_reasons": sorted(set(failures[kind, name]))[:5],
        }
        if kind == "test":
            entry["rejection_rate"] = rate([r for r, _ in rows])
            out["difference_tests"][name] = entry
        else:
            out["mean_intervals"][name] = entry
    return out
