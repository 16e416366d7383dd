"""paincontrol_lib.stats against hand computations and the reference implementations (scipy,
statsmodels) it stands for."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from paincontrol_lib import stats


def test_bootstrap_ci_brackets_the_mean_and_matches_a_hand_run():
    x = np.r_[np.random.default_rng(4).normal(2.0, 1.0, 60), np.nan, np.nan]
    mean, lo, hi = stats.bootstrap_ci(x, n_boot=500, seed=3)
    clean = x[np.isfinite(x)]
    assert mean == pytest.approx(clean.mean()) and lo < mean < hi
    rng = np.random.default_rng(3)  # the same draw, by hand
    means = clean[rng.integers(0, len(clean), (500, len(clean)))].mean(1)
    assert (lo, hi) == tuple(np.quantile(means, [0.025, 0.975]))
    assert all(math.isnan(v) for v in stats.bootstrap_ci([np.nan, np.nan]))


def test_cluster_bootstrap_is_wider_when_clusters_are_correlated():
    rng = np.random.default_rng(0)
    people = np.repeat(np.arange(12), 10)  # 12 people, 10 frames each
    x = rng.normal(0, 1, 12)[people] + rng.normal(0, 0.1, len(people))
    _, naive_lo, naive_hi = stats.bootstrap_ci(x, seed=1)
    mean, lo, hi = stats.cluster_bootstrap_ci(x, people, seed=1)
    assert mean == pytest.approx(x.mean()) and lo < mean < hi
    assert hi - lo > 2 * (naive_hi - naive_lo)  # ~sqrt(10) wider: 12 people, not 120 frames


def test_cluster_bootstrap_of_singletons_is_the_plain_bootstrap_and_drops_nans():
    x = np.random.default_rng(2).normal(size=40)
    np.testing.assert_allclose(
        stats.cluster_bootstrap_ci(x, np.arange(40), n_boot=300, seed=5),
        stats.bootstrap_ci(x, n_boot=300, seed=5),
        rtol=1e-12,
    )
    values, groups = [1.0, np.nan, 3.0, 5.0], ["a", "a", "b", "b"]
    assert stats.cluster_bootstrap_ci(values, groups)[0] == pytest.approx(3.0)
    assert all(math.isnan(v) for v in stats.cluster_bootstrap_ci([np.nan], ["a"]))
    with pytest.raises(ValueError, match="must be 1-D and match"):
        stats.cluster_bootstrap_ci([1.0, 2.0], ["a"])


def test_t_interval_matches_scipy():
    values = [0.61, 0.72, None, 0.58, np.nan, 0.69, 0.66]
    clean = np.array([0.61, 0.72, 0.58, 0.69, 0.66])
    mean, lo, hi = stats.t_interval(values, level=0.9)
    expected = sps.t.interval(0.9, len(clean) - 1, loc=clean.mean(), scale=sps.sem(clean))
    assert mean == pytest.approx(clean.mean())
    assert (lo, hi) == pytest.approx(expected, rel=1e-12)
    single = stats.t_interval([0.5, np.nan])
    assert single[0] == 0.5 and math.isnan(single[1]) and math.isnan(single[2])
    assert all(math.isnan(v) for v in stats.t_interval([]))


@pytest.mark.parametrize("successes,n", [(0, 10), (3, 10), (10, 10), (57, 120), (1, 1)])
@pytest.mark.parametrize("level", [0.95, 0.8])
def test_wilson_interval_matches_statsmodels(successes, n, level):
    from statsmodels.stats.proportion import proportion_confint

    p, lo, hi = stats.wilson_interval(successes, n, level)
    expected = proportion_confint(successes, n, alpha=1 - level, method="wilson")
    assert p == successes / n
    assert (lo, hi) == pytest.approx(expected, abs=1e-12)


def test_wilson_interval_edge_cases():
    assert all(math.isnan(v) for v in stats.wilson_interval(0, 0))
    with pytest.raises(ValueError):
        stats.wilson_interval(4, 3)


def test_icc_on_known_cases():
    truth = np.array([0, 1, 2, 3, 4, 5.0])
    assert stats.icc_3_1(truth, truth) == pytest.approx(1.0)
    assert stats.icc_3_1(truth, truth + 2) == pytest.approx(1.0)  # consistency ignores offsets
    assert stats.icc_3_1(truth, truth[::-1]) < 0
    noisy = truth + np.array([0.5, -0.5, 0.5, -0.5, 0.5, -0.5])
    assert 0.8 < stats.icc_3_1(truth, noisy) < 1
    assert stats.icc_3_1(truth[:2], truth[:2]) is None
    assert stats.icc_3_1(np.ones(4), np.ones(4)) is None  # no variance at all
    with_nan = stats.icc_3_1(np.r_[truth, np.nan], np.r_[noisy, 1.0])
    assert with_nan == stats.icc_3_1(truth, noisy)  # incomplete pairs are dropped


def test_icc_and_its_ci_on_a_hand_computed_example():
    # pairs (1,2) (2,2) (3,4) (4,4) (5,6): grand mean 3.3; SS rows 2 * 10.3 = 20.6, SS columns
    # 5 * 0.18 = 0.9, SS total 22.1, SS error 0.6; MS rows 20.6 / 4 = 5.15, MS error
    # 0.6 / 4 = 0.15; ICC = (5.15 - 0.15) / (5.15 + 0.15) = 50 / 53.
    truth, estimate = [1, 2, 3, 4, 5], [2, 2, 4, 4, 6]
    assert stats.icc_3_1(truth, estimate) == pytest.approx(50 / 53, rel=1e-12)
    # McGraw & Wong: F = 5.15 / 0.15, F_0.975(4, 4) = 9.6045 (tables);
    # F_L = F / 9.6045, F_U = F * 9.6045, bounds (F - 1) / (F + 1) with k = 2.
    f, f_table = 5.15 / 0.15, 9.6045
    f_low, f_high = f / f_table, f * f_table
    icc, lo, hi = stats.icc_3_1_ci(truth, estimate)
    assert icc == stats.icc_3_1(truth, estimate)
    assert lo == pytest.approx((f_low - 1) / (f_low + 1), abs=1e-4)  # 0.5628
    assert hi == pytest.approx((f_high - 1) / (f_high + 1), abs=1e-4)  # 0.9940
    narrower = stats.icc_3_1_ci(truth, estimate, level=0.5)
    assert lo < narrower[1] < icc < narrower[2] < hi
    assert stats.icc_3_1_ci([1, 2, 3], [2, 3, 4]) == (1.0, 1.0, 1.0)  # no error variance
    assert stats.icc_3_1_ci([1, 2], [1, 2]) is None


def test_holm_matches_statsmodels_and_refuses_nans():
    """A NaN (a test that could not be run) must not quietly shrink the family."""
    from statsmodels.stats.multitest import multipletests

    assert np.allclose(stats.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    p = np.array([0.002, 0.2, 0.04, 0.011, 0.5])
    np.testing.assert_array_equal(stats.holm(p), multipletests(p, method="holm")[1])
    with pytest.raises(ValueError, match=r"positions \[3\] of 4 are not finite"):
        stats.holm([0.01, 0.04, 0.03, np.nan])
    with pytest.raises(ValueError, match="not finite"):
        stats.holm([np.nan, np.nan])
    assert len(stats.holm([])) == 0


def test_paired_tests_match_scipy_and_refuse_degenerate_data():
    rng = np.random.default_rng(7)
    a = rng.normal(0, 1, 20)
    b = a + 0.5 + rng.normal(0, 0.3, 20)
    assert stats.paired_wilcoxon(a, b) == sps.wilcoxon(a, b).pvalue
    diff = pd.Series(b - a)
    assert stats.paired_t(diff) == sps.ttest_1samp(diff, 0).pvalue
    assert stats.paired_t(np.r_[b - a, np.nan]) == stats.paired_t(b - a)  # NaN pairs dropped
    assert math.isnan(stats.paired_t([0.3]))  # fewer than two pairs
    assert math.isnan(stats.paired_t([0.25, 0.25, 0.25, np.nan]))  # no variance


def _crossed_data(effect=0.5, seed=0):
    """Every source person's expression on every target person, by two methods."""
    rng = np.random.default_rng(seed)
    source, target = rng.normal(0, 1, 8), rng.normal(0, 1, 8)
    rows = [
        {"source": f"s{s}", "target": f"t{t}", "method": m,
         "y": effect * m + source[s] + target[t] + rng.normal(0, 0.3)}
        for s in range(8) for t in range(8) for m in (0, 1)
    ]  # fmt: skip
    return pd.DataFrame(rows), source.var(ddof=1), target.var(ddof=1)


def test_crossed_mixed_model_recovers_a_simulated_effect():
    data, source_var, target_var = _crossed_data()
    fit = stats.crossed_mixed_model("y ~ method", data, ["source", "target"])
    assert fit.params["method"] == pytest.approx(0.5, abs=0.15)
    lo, hi = fit.conf_int().loc["method"]
    assert lo < 0.5 < hi and hi - lo < 0.3
    assert list(fit.model.exog_vc.names) == ["source", "target"]
    assert fit.vcomp == pytest.approx([source_var, target_var], rel=0.2)
    assert "_all" not in data  # the grouping column is added to a copy
    named = stats.crossed_mixed_model("y ~ method", data, {"src": "source", "tgt": "target"})
    assert named.params["method"] == fit.params["method"] and "src Var" in named.params
    with pytest.raises(ValueError, match="at least one factor"):
        stats.crossed_mixed_model("y ~ method", data, [])


def test_mixed_model_raises_a_named_fit_error_when_it_cannot_be_fitted():
    data, *_ = _crossed_data()
    fit = stats.mixed_model("y ~ method", data, groups="source")
    assert fit.params["method"] == pytest.approx(0.5, abs=0.15)
    assert isinstance(fit.fit_warnings, list)
    collinear = data.assign(twice=2 * data["method"])
    with pytest.raises(stats.FitError, match="y ~ method \\+ twice: cannot be fitted"):
        stats.mixed_model("y ~ method + twice", collinear, groups="source")


def test_mixed_model_that_does_not_converge_is_a_fit_error():
    """A crossed fit that statsmodels cannot optimise (found in the issue-30 simulation: the
    crossed-slopes candidate on one simulated dataset) raises, where it used to return a fit
    with its warnings silenced."""
    design = stats.crossed_design(10, 10, 3, 5, 5)
    failed = 0
    for i in range(40):
        data = stats.simulate_crossed(design, np.random.default_rng([1, i]))
        try:
            stats.DIFFERENCE_TESTS["crossed_slopes"][0](data, "method", "baseline", ["explicit"])
        except stats.FitError as error:
            assert "did not converge" in str(error) or "standard error" in str(error)
            failed += 1
    assert failed >= 1


def test_a_mixed_model_can_name_its_optimisers(monkeypatch):
    """The study's sensitivity model adds gradient-free Powell after statsmodels' own chain;
    where the default converges, Powell alone finds the same fit."""
    from statsmodels.regression.mixed_linear_model import MixedLM

    data, *_ = _crossed_data()
    default = stats.crossed_mixed_model("y ~ method", data, ["source", "target"])
    powell = stats.crossed_mixed_model("y ~ method", data, ["source", "target"], ["powell"])
    assert powell.params["method"] == pytest.approx(default.params["method"], abs=1e-3)
    asked, fit = [], MixedLM.fit

    def recording(self, *args, **kwargs):
        asked.append(kwargs.get("method"))
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(MixedLM, "fit", recording)
    from paincontrol_lib.study.analysis import SENSITIVITY_OPTIMIZERS

    stats.crossed_mixed_model("y ~ method", data, ["source"], SENSITIVITY_OPTIMIZERS)
    stats.crossed_mixed_model("y ~ method", data, ["source"])
    assert asked == [["bfgs", "lbfgs", "cg", "powell"], None]
