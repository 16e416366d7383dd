"""Analysis of the realism ratings (an export of the web app, or the simulator's).

1. Attention checks: raters failing more than ``max_attention_failures`` are excluded.
2. Per method: mean realism rating with a 95 % bootstrap CI over raters (each rater's mean,
   resampled; the design is fully crossed, so this is the cluster bootstrap of the grand mean).
3. Method effect: ordinal logistic regression (statsmodels ``OrderedModel``) of rating ~ method
   + rater, reference = the real photographs. Real frames are the study's fixed point (the best
   "realism" attainable); every method's effect is then its realism deficit, comparable across
   studies and methods, and PainControl vs warp is read off as a contrast. Rater terms absorb
   leniency (each rater uses the scale differently); standard errors are clustered by image, so
   the item heterogeneity behind repeated ratings of one image widens the CIs. Sensitivity: a
   linear mixed model (``MixedLM``) of the rating with crossed random intercepts for rater and
   image.
4. Inter-rater reliability: Krippendorff's alpha (ordinal) over images x raters (first showings).
5. Test-retest: the repeated items' two answers by the same rater (agreement, weighted kappa).
6. Pain intensity, where given: Spearman correlation with the PSPI the image was made for.

Only first showings enter 2-4, so a repeated image does not count twice.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from paincontrol_lib.stats import FitError, bootstrap_ci, crossed_mixed_model
from paincontrol_lib.study.design import REAL

REQUIRED = ("rater", "image_id", "showing", "realism", "kind", "method", "expected")


def load_ratings(path) -> pd.DataFrame:
    """A ratings CSV (``paincontrol study export``), checked for the columns the analysis
    needs and for ratings on the 1-5 scale."""
    from pathlib import Path

    if not Path(path).is_file():
        raise FileNotFoundError(f"study.ratings: {path} not found (paincontrol study export)")
    table = pd.read_csv(path)
    missing = [c for c in REQUIRED if c not in table]
    if missing:
        raise ValueError(f"{path}: not a study export, columns {missing} missing")
    bad = ~table["realism"].isin(range(1, 6))
    if bad.any():
        raise ValueError(f"{path}: {int(bad.sum())} realism ratings outside 1-5")
    return table


def attention(ratings: pd.DataFrame, max_failures: int) -> pd.DataFrame:
    """Per rater: attention checks seen and failed, and whether the rater is excluded."""
    checks = ratings[ratings["kind"] == "attention"]
    failed = (checks["realism"] != checks["expected"]).groupby(checks["rater"]).sum()
    table = pd.DataFrame({"rater": sorted(ratings["rater"].unique())})
    table["n_checks"] = table["rater"].map(checks.groupby("rater").size()).fillna(0).astype(int)
    table["n_failed"] = table["rater"].map(failed).fillna(0).astype(int)
    table["excluded"] = table["n_failed"] > max_failures
    return table


def krippendorff_alpha(values, level: str = "ordinal") -> float:
    """Krippendorff's alpha of a units x coders array (NaN = no answer).

    Coincidence-matrix form (Krippendorff 2011, "Computing Krippendorff's alpha-reliability"):
    ``1 - (n - 1) * sum(o * d2) / sum(n_c n_k d2)`` over pairable values (units with >= 2
    answers); ``d2`` is the squared difference of the level (nominal, ordinal, interval).
    """
    x = np.asarray(values, float)
    if x.ndim != 2:
        raise ValueError("krippendorff_alpha needs a 2-D units x coders array")
    x = x[np.isfinite(x).sum(1) >= 2]
    categories = np.unique(x[np.isfinite(x)])
    if len(categories) < 2:
        raise ValueError("Krippendorff's alpha needs at least two different pairable values")
    index = {v: i for i, v in enumerate(categories)}
    o = np.zeros((len(categories), len(categories)))
    for unit in x:
        seen = unit[np.isfinite(unit)]
        counts = np.bincount([index[v] for v in seen], minlength=len(categories)).astype(float)
        o += (np.outer(counts, counts) - np.diag(counts)) / (len(seen) - 1)
    n_c = o.sum(1)
    n = n_c.sum()
    if level == "nominal":
        d2 = 1.0 - np.eye(len(categories))
    elif level == "interval":
        d2 = np.subtract.outer(categories, categories) ** 2
    elif level == "ordinal":
        cum = np.cumsum(n_c)
        lo, hi = np.minimum.outer(np.arange(len(n_c)), np.arange(len(n_c))), \
            np.maximum.outer(np.arange(len(n_c)), np.arange(len(n_c)))  # fmt: skip
        between = cum[hi] - np.where(lo > 0, cum[lo - 1], 0.0)
        d2 = (between - (n_c[lo] + n_c[hi]) / 2) ** 2
    else:
        raise ValueError(f"level must be nominal, ordinal or interval, not {level!r}")
    return float(1.0 - (n - 1) * (o * d2).sum() / (np.outer(n_c, n_c) * d2).sum())


def retest_agreement(items: pd.DataFrame) -> dict:
    """Agreement of each rater's two answers to a repeated image."""
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    wide = items.pivot_table(index=["rater", "image_id"], columns="showing", values="realism")
    if 2 not in wide or 1 not in wide:
        return {"n_pairs": 0}
    pairs = wide[[1, 2]].dropna()
    first, second = pairs[1].to_numpy(int), pairs[2].to_numpy(int)
    return {
        "n_pairs": int(len(pairs)),
        "exact_agreement": float(np.mean(first == second)),
        "within_one": float(np.mean(np.abs(first - second) <= 1)),
        "weighted_kappa": float(
            cohen_kappa_score(first, second, labels=[1, 2, 3, 4, 5], weights="quadratic")
        ),  # fmt: skip
        "spearman": float(spearmanr(first, second).statistic) if len(pairs) > 2 else None,
    }


def mean_ratings(items: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Per method: mean rating and 95 % CI, bootstrapping raters (each rater's mean)."""
    rows = []
    for method, group in items.groupby("method", sort=True):
        per_rater = group.groupby("rater")["realism"].mean()
        mean, lo, hi = bootstrap_ci(per_rater, n_boot, seed)
        rows.append({"method": method, "mean": mean, "lo": lo, "hi": hi, "n": len(group),
                     "n_raters": len(per_rater)})  # fmt: skip
    return pd.DataFrame(rows)


def _term(method: str, reference: str) -> str:
    return f"C(method, Treatment({reference!r}))[T.{method}]"


def _logit_ordered_model():
    """statsmodels' ``OrderedModel`` with the logistic cdf/pdf computed as scipy's logistic does
    (``expit``), minus the per-call overhead of ``scipy.stats`` distributions: that overhead was
    two thirds of a fit, and stage 06 fits one per simulated panel."""
    from scipy.special import expit
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    class LogitOrderedModel(OrderedModel):
        def cdf(self, x):
            return expit(x)

        def pdf(self, x):
            y = -np.abs(x)
            return np.exp(y - 2.0 * np.log1p(np.exp(y)))

    return LogitOrderedModel


def ordinal_model(items: pd.DataFrame, reference: str = REAL):
    """``OrderedModel`` (logit) of realism ~ method + rater, SEs clustered by image.
    :class:`~paincontrol_lib.stats.FitError` when BFGS does not converge or a coefficient has
    no finite standard error: an unconverged fit's numbers are not results."""
    if reference not in set(items["method"]):
        raise ValueError(f"reference condition {reference!r} has no ratings")
    formula = f"realism ~ C(method, Treatment({reference!r}))"
    if items["rater"].nunique() > 1:
        formula += " + C(rater)"
    data = items.assign(realism=items["realism"].astype(int))
    model = _logit_ordered_model().from_formula(formula, data, distr="logit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # checked below instead
        fit = model.fit(method="bfgs", maxiter=5000, disp=False, cov_type="cluster",
                        cov_kwds={"groups": pd.factorize(data["image_id"])[0]})  # fmt: skip
        finite = np.isfinite(np.asarray(fit.bse, float)).all()
    if not fit.mle_retvals.get("converged", False):
        raise FitError(f"ordinal model {formula}: BFGS did not converge (scipy warnflag "
                       f"{fit.mle_retvals.get('warnflag')})")  # fmt: skip
    if not finite:
        raise FitError(f"ordinal model {formula}: coefficients without a finite standard error")
    return fit


def effects(fit, methods, reference: str = REAL) -> pd.DataFrame:
    """Each method's log-odds effect vs ``reference`` with its 95 % CI and p-value."""
    conf = fit.conf_int()
    rows = [{"method": reference, "coef": 0.0, "lo": np.nan, "hi": np.nan, "p": np.nan}]
    for method in sorted(set(methods) - {reference}):
        term = _term(method, reference)
        rows.append({"method": method, "coef": float(fit.params[term]),
                     "lo": float(conf.loc[term, 0]), "hi": float(conf.loc[term, 1]),
                     "p": float(fit.pvalues[term])})  # fmt: skip
    return pd.DataFrame(rows)


def contrast(fit, a: str, b: str, reference: str = REAL) -> dict:
    """Log-odds of a higher rating for method ``a`` than ``b`` (CI from the model's cov)."""
    from scipy.stats import norm

    names = list(fit.params.index)
    weights = np.zeros(len(names))
    for method, sign in ((a, 1.0), (b, -1.0)):
        if method != reference:
            weights[names.index(_term(method, reference))] = sign
    estimate = float(weights @ fit.params.to_numpy())
    se = float(np.sqrt(weights @ np.asarray(fit.cov_params()) @ weights))
    low, high = estimate - 1.96 * se, estimate + 1.96 * se
    p = float(2 * norm.sf(abs(estimate) / se))
    return {"estimate": estimate, "ci_low": low, "ci_high": high, "p": p}


# statsmodels' chain for MixedLM, then gradient-free Powell: on one simulated panel of the default
# run (8 conditions) the gradient methods stalled where Powell converged to the same estimates
# that L-BFGS alone reaches.
SENSITIVITY_OPTIMIZERS = ("bfgs", "lbfgs", "cg", "powell")


def mixed_model(items: pd.DataFrame, reference: str = REAL) -> pd.DataFrame:
    """Sensitivity: rating ~ method with crossed random intercepts (rater, image), MixedLM;
    coefficients are differences in mean rating (1-5 points) from ``reference``.
    :class:`~paincontrol_lib.stats.FitError` when it cannot be fitted or does not converge."""
    data = items.assign(realism=items["realism"].astype(float))
    formula = f"realism ~ C(method, Treatment({reference!r}))"
    fit = crossed_mixed_model(formula, data, {"rater": "rater", "image": "image_id"},
                              optimizers=SENSITIVITY_OPTIMIZERS)  # fmt: skip
    conf = fit.conf_int()
    rows = []
    for method in sorted(set(items["method"]) - {reference}):
        term = _term(method, reference)
        rows.append({"method": method, "coef": float(fit.params[term]),
                     "lo": float(conf.loc[term, 0]), "hi": float(conf.loc[term, 1])})  # fmt: skip
    return pd.DataFrame(rows)


def pain_agreement(items: pd.DataFrame) -> dict[str, float | None]:
    """Per method: Spearman correlation of the rated pain with the image's PSPI."""
    from scipy.stats import spearmanr

    out = {}
    for method, group in items.dropna(subset=["pain", "pspi"]).groupby("method"):
        ok = len(group) > 2 and group["pain"].nunique() > 1 and group["pspi"].nunique() > 1
        out[method] = float(spearmanr(group["pain"], group["pspi"]).statistic) if ok else None
    return out


def first_showings(ratings: pd.DataFrame, max_attention_failures: int):
    """``(checks, items, first)``: the attention table, the item ratings of the raters kept,
    and their first showings (what the models are fitted to)."""
    checks = attention(ratings, max_attention_failures)
    kept = set(checks.loc[~checks["excluded"], "rater"])
    items = ratings[(ratings["kind"] == "item") & ratings["rater"].isin(kept)]
    if items.empty:
        raise ValueError("no item ratings left after the attention-check exclusions")
    return checks, items, items[items["showing"] == 1]


def analyse(
    ratings: pd.DataFrame,
    *,
    max_attention_failures: int,
    n_bootstrap: int,
    seed: int,
    reference: str = REAL,
    true_effects: dict[str, float] | None = None,
) -> dict:
    """Every result of the study, and the ``reports/metrics/study.json`` dict."""
    checks, items, first = first_showings(ratings, max_attention_failures)
    matrix = first.pivot_table(index="image_id", columns="rater", values="realism")
    fit = ordinal_model(first, reference)
    table = effects(fit, first["method"].unique(), reference).rename(
        columns={"lo": "coef_lo", "hi": "coef_hi"}
    )
    table = table.merge(mean_ratings(first, n_bootstrap, seed), on="method")
    mixed, failures = None, []
    if first["rater"].nunique() > 1:
        try:
            mixed = mixed_model(first, reference)
        except FitError as error:
            failures.append({"fit": "sensitivity mixed model", "reason": str(error)})
    focus = "paincontrol" if "paincontrol" in set(first["method"]) else None
    others = sorted(set(first["method"]) - {focus, reference}) if focus else []
    contrasts = {f"{focus}_vs_{m}": contrast(fit, focus, m, reference) for m in others}
    pain = pain_agreement(first)
    sensitivity = None if mixed is None else {
        r.method: {"coef": r.coef, "ci_low": r.lo, "ci_high": r.hi}
        for r in mixed.itertuples(index=False)
    }  # fmt: skip
    if true_effects is not None:
        table["true"] = table["method"].map(
            lambda m: true_effects[m] - true_effects.get(reference, 0.0)
        )
    methods = {}
    for row in table.itertuples(index=False):
        methods[row.method] = {
            "n_ratings": int(row.n),
            "mean_rating": row.mean,
            "ci_low": row.lo,
            "ci_high": row.hi,
            "effect_estimate": row.coef,
            "effect_ci_low": row.coef_lo,
            "effect_ci_high": row.coef_hi,
            "effect_p": row.p,
            "effect_true": getattr(row, "true", None),
            "pain_spearman": pain.get(row.method),
        }
    metrics = {
        "simulated": bool(ratings.get("simulated", pd.Series([False])).all()),
        "n_raters": int(ratings["rater"].nunique()),
        "n_raters_excluded": int(checks["excluded"].sum()),
        "n_ratings": int(len(ratings)),
        "n_ratings_analysed": int(len(first)),
        "n_images": int(first["image_id"].nunique()),
        "reliability": krippendorff_alpha(matrix.to_numpy(), "ordinal"),
        "reliability_measure": "Krippendorff's alpha, ordinal (images x included raters)",
        "test_retest": retest_agreement(items),
        "reference": reference,
        "effect_scale": "log-odds of a higher rating vs the reference (ordinal logit, rater "
        "terms, SEs clustered by image)",
        "methods": methods,
        "contrasts": contrasts,
        "sensitivity_mixedlm": sensitivity,
        "fits_failed": {"count": len(failures), "failures": failures},
    }
    return {"attention": checks, "items": items, "effects": table, "mixed": mixed,
            "fit": fit, "metrics": metrics}  # fmt: skip
