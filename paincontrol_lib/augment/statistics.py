"""Statistics of the sweep: what a gain in AUC means when both the test people and the seeds
are samples.

Every fit is scored on the same test people; a fit's AUC depends on who they are as much as on
its seed. So intervals and tests come from one bootstrap over test people and seeds together
(:func:`bootstrap_aucs`): each replicate draws test people with replacement (the AUC over the
drawn people's frames, a person drawn twice counting twice) and seeds with replacement, the same
draws for every arm and level, so comparisons stay paired by person and seed. Per comparison
and level: the mean AUC difference over seeds, a t-interval from the bootstrap's standard error
(Welch-Satterthwaite degrees of freedom from the people's and the seeds' parts: a percentile
interval over 6 seeds rejects a true null too often, :func:`check_bootstrap`) and its two-sided
p; a two one-sided tests (TOST) p against a declared margin, so "no gain" is claimed only when
the difference is shown to lie inside it. Holm runs over the family of claims the README states
(``params.yaml: augment.inference.claims``: their difference and equivalence tests together)
and, separately, over every other cell (``exploratory``). F1 and PSPI correlation keep a
t-interval over seeds (descriptive). The mixed model is a description too; a fit that fails is
reported, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from paincontrol_lib import stats

# The questions of the claim block: (name, arm, baseline). The first is the paper's claim; the
# second asks whether the diffusion model is needed at all (the warp is its training-free rival);
# the third is the control every augmentation paper owes.
COMPARISONS = (
    ("paincontrol_vs_real", "paincontrol", "real"),
    ("paincontrol_vs_warp", "paincontrol", "warp"),
    ("classic_vs_real", "classic", "real"),
    ("warp_vs_real", "warp", "real"),
)
CLAIMS, EXPLORATORY = "claims", "exploratory"  # the two Holm families


@dataclass
class Predictions:
    """Every fit's pain probability on every test image (rows aligned with the sweep's
    results), with each image's label and person: what the bootstrap resamples."""

    prob: np.ndarray  # (n_fits, n_images); a missing prediction scored 0, as in the AUC
    pain: np.ndarray  # (n_images,) bool: PSPI > 0
    person: np.ndarray  # (n_images,) the test person each image shows

    def __post_init__(self):
        n = len(self.pain)
        if self.prob.ndim != 2 or self.prob.shape[1] != n or len(self.person) != n:
            raise ValueError(f"predictions {self.prob.shape} do not match {len(self.pain)} "
                             f"labels and {len(self.person)} people")  # fmt: skip


def people_auc(prob: np.ndarray, pain: np.ndarray, person: np.ndarray, counts: np.ndarray):
    """AUC of ``prob`` against ``pain`` when each test person (``person``: index 0..k-1 per
    image) counts ``counts`` times (one row per replicate): the weighted share of (pain,
    no-pain) image pairs ranked right, ties counting half; NaN for a replicate without both
    classes. Computed from the k x k matrix of pairs ranked right between each two people, so a
    replicate costs k^2, not a sort. With unit counts it is scikit-learn's ``roc_auc_score``."""
    k = counts.shape[-1]
    pos, neg = prob[pain], prob[~pain]
    right = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    to_pos = np.eye(k)[person[pain]]  # (n_pain, k) one-hot
    to_neg = np.eye(k)[person[~pain]]
    pairs = to_pos.T @ right @ to_neg  # (k, k): pairs ranked right, pain person x calm person
    c = np.atleast_2d(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.einsum("bi,ij,bj->b", c, pairs, c) / ((c @ to_pos.sum(0)) * (c @ to_neg.sum(0)))


def bootstrap_aucs(predictions: Predictions, n_seeds: int, n_boot: int, seed: int):
    """``(observed, replicates, seed_counts)``: every fit's AUC on all test people (n_fits,),
    on ``n_boot`` draws of test people with replacement (n_boot, n_fits; the same draw for
    every fit: paired by person), and the matching draws of seeds with replacement (n_boot,
    n_seeds; how often each seed position is drawn)."""
    people, index = np.unique(predictions.person, return_inverse=True)
    rng = np.random.default_rng([seed, 30])
    uniform = np.full(len(people), 1 / len(people))
    person_counts = rng.multinomial(len(people), uniform, n_boot).astype(float)
    seed_counts = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), n_boot).astype(float)
    counts = np.vstack([np.ones(len(people)), person_counts])  # row 0: everyone once
    aucs = np.column_stack(
        [people_auc(p, predictions.pain, index, counts) for p in predictions.prob]
    )
    return aucs[0], aucs[1:], seed_counts


@dataclass
class Spread:
    """What the bootstrap says about one mean over seeds (an AUC or a paired AUC difference):
    its value, the joint replicates (people and seeds drawn), the replicates with people drawn
    and every seed kept, and the value per seed on all people."""

    estimate: float
    joint: np.ndarray  # (n_boot,)
    people: np.ndarray  # (n_boot,)
    per_seed: np.ndarray  # (n_seeds,)

    def __sub__(self, other: Spread) -> Spread:
        return Spread(self.estimate - other.estimate, self.joint - other.joint,
                      self.people - other.people, self.per_seed - other.per_seed)  # fmt: skip

    def t(self, n_people: int) -> tuple[float, float]:
        """``(se, df)``: the joint bootstrap's standard error, and Welch-Satterthwaite degrees
        of freedom from its two sources, test people (``people``' variance, ``n_people - 1``
        df) and seeds (``per_seed``'s variance over their number, ``n_seeds - 1`` df): few
        seeds or few people make a t, not a normal, the right reference."""
        ok = np.isfinite(self.joint) & np.isfinite(self.people)
        se = float(np.std(self.joint[ok], ddof=1))
        v_people = float(np.var(self.people[ok], ddof=1))
        n_seeds = len(self.per_seed)
        v_seeds = float(np.var(self.per_seed, ddof=1)) / n_seeds if n_seeds > 1 else 0.0
        parts = v_people**2 / max(1, n_people - 1)
        parts += v_seeds**2 / (n_seeds - 1) if n_seeds > 1 else 0.0
        df = (v_people + v_seeds) ** 2 / parts if parts > 0 else float(max(1, n_people - 1))
        return se, max(1.0, df)


def _interval(spread: Spread, n_people: int, margin: float, level: float = 0.95) -> dict:
    """Estimate, t-interval from the joint bootstrap's standard error (:meth:`Spread.t`),
    two-sided p against 0 and the two one-sided tests' p against +-``margin``."""
    from scipy import stats as sps

    se, df = spread.t(n_people)
    d = spread.estimate
    half = sps.t.ppf(0.5 + level / 2, df) * se
    if se > 0:
        p = 2 * sps.t.sf(abs(d) / se, df)
        p_tost = max(sps.t.sf((d + margin) / se, df), sps.t.sf((margin - d) / se, df))
    else:  # no spread at all
        p, p_tost = (1.0 if d == 0 else 0.0), (0.0 if abs(d) < margin else 1.0)
    return {"estimate": float(d), "ci_low": float(d - half), "ci_high": float(d + half),
            "p": float(p), "p_tost": float(p_tost), "se": se, "df": float(df)}  # fmt: skip


def verdict(test: dict, alpha: float = 0.05) -> str:
    """The rule every verdict follows: a gain or loss only when the Holm-adjusted difference
    test rejects; "equivalent" (no gain beyond the margin) only when the Holm-adjusted TOST
    rejects; otherwise inconclusive. Never "no gain" from a non-significant test."""
    if test["p_holm"] < alpha:
        direction = "gain" if test["estimate"] > 0 else "loss"
        return f"{direction} within the margin" if test["p_tost_holm"] < alpha else direction
    return "equivalent" if test["p_tost_holm"] < alpha else "inconclusive"


def resolve_claims(claims: dict, levels) -> set[tuple[str, int]]:
    """The declared claims as (comparison, level) pairs; ``all`` is the largest level run."""
    known = {name for name, *_ in COMPARISONS}
    resolved = set()
    for name, wanted in claims.items():
        if name not in known:
            raise ValueError(f"augment.inference.claims: {name!r} is not one of {sorted(known)}")
        for level in wanted:
            k = max(levels) if level == "all" else level
            if k not in set(levels):
                raise ValueError(f"augment.inference.claims: {name} at level {level!r}, which "
                                 f"the sweep did not run (levels {sorted(levels)})")  # fmt: skip
            resolved.add((name, int(k)))
    return resolved


def inference(results: pd.DataFrame, predictions: Predictions, detector: str,
              settings: dict, seed: int) -> dict:  # fmt: skip
    """One detector's claim block: per comparison and level the mean AUC difference over seeds
    with its bootstrap interval, p, TOST p against ``settings["equivalence_margin"]``, Holm
    family and verdict; per (level, arm) the mean AUC with its bootstrap interval.

    ``{"cells": {level: {arm: {...}}}, "claim": {name: {level: {...}}}, "equivalence": {name:
    {level: {margin, p_tost, p_tost_holm, family, verdict}}}, "failures": [...]}``; a cell that
    cannot be tested (an arm missing, AUC undefined) is named in ``failures``, not a NaN."""
    alpha, margin = settings["alpha"], settings["equivalence_margin"]
    mine = results.index[results["detector"] == detector]
    data = results.loc[mine]
    seeds = sorted(data["seed"].unique())
    position = {s: i for i, s in enumerate(seeds)}
    observed, replicates, seed_counts = bootstrap_aucs(
        Predictions(predictions.prob[mine], predictions.pain, predictions.person),
        len(seeds), settings["n_bootstrap"], seed,
    )  # fmt: skip
    row_of = {key: i for i, key in enumerate(zip(data["level"], data["arm"], data["seed"],
                                                 strict=True))}  # fmt: skip

    n_people = len(np.unique(predictions.person))

    def mean_over_seeds(level, arm, common) -> Spread:
        """The mean AUC over ``common`` seeds, with its replicates."""
        rows = [row_of[level, arm, s] for s in common]
        counts = seed_counts[:, [position[s] for s in common]]
        with np.errstate(invalid="ignore", divide="ignore"):
            joint = (replicates[:, rows] * counts).sum(1) / counts.sum(1)
        return Spread(observed[rows].mean(), joint, replicates[:, rows].mean(1), observed[rows])

    cells: dict = {}
    for (level, arm), group in data.groupby(["level", "arm"], sort=True):
        auc = _interval(mean_over_seeds(level, arm, sorted(group["seed"])), n_people, margin)
        cells.setdefault(str(level), {})[arm] = {"auc": auc["estimate"],
                                                 "auc_ci_low": auc["ci_low"],
                                                 "auc_ci_high": auc["ci_high"]}  # fmt: skip
    claims = resolve_claims(settings["claims"], sorted(data["level"].unique()))
    tests, failures = [], []
    for name, arm, baseline in COMPARISONS:
        for level in sorted(data["level"].unique()):
            have = data[data["level"] == level].groupby("arm")["seed"].agg(set)
            if arm not in have or baseline not in have:
                if arm in set(results["arm"]) and baseline in set(results["arm"]):
                    failures.append({"comparison": name, "level": int(level),
                                     "reason": "an arm has no fits at this level"})  # fmt: skip
                continue
            common = sorted(have[arm] & have[baseline])
            spread = mean_over_seeds(level, arm, common) - mean_over_seeds(level, baseline, common)
            usable = int(np.isfinite(spread.joint).sum())
            if not np.isfinite(spread.estimate) or usable < settings["n_bootstrap"] / 2:
                failures.append({"comparison": name, "level": int(level), "reason": "AUC "
                                 "undefined (test people without both classes)"})  # fmt: skip
                continue
            family = CLAIMS if (name, int(level)) in claims else EXPLORATORY
            tests.append({"comparison": name, "level": int(level), "family": family,
                          **_interval(spread, n_people, margin), "n_seeds": len(common),
                          "n_test_people": n_people, "n_boot": usable})  # fmt: skip
    for family in (CLAIMS, EXPLORATORY):
        members = [t for t in tests if t["family"] == family]
        adjusted = stats.holm([t["p"] for t in members] + [t["p_tost"] for t in members])
        for k, test in enumerate(members):
            test["p_holm"] = float(adjusted[k])
            test["p_tost_holm"] = float(adjusted[len(members) + k])
            test["family_size"] = 2 * len(members)
    claim, equivalence = {}, {}
    for test in tests:
        name, level = test.pop("comparison"), str(test.pop("level"))
        test["verdict"] = verdict(test, alpha)
        claim.setdefault(name, {})[level] = test
        equivalence.setdefault(name, {})[level] = {
            "margin": margin, "p_tost": test["p_tost"], "p_tost_holm": test["p_tost_holm"],
            "family": test["family"], "verdict": test["verdict"],
        }  # fmt: skip
    return {"cells": cells, "claim": claim, "equivalence": equivalence, "failures": failures}


def simulate_sweep(rng: np.random.Generator, n_people: int = 15, per_person: int = 30,
                   n_seeds: int = 6, gain: float = 0.0, arm_person_sd: float = 0.3,
                   arm_seed_sd: float = 0.2) -> tuple[pd.DataFrame, Predictions]:  # fmt: skip
    """One simulated sweep cell of two arms, ``real`` and ``paincontrol``, scored on the same
    test people: each image's score is its person's baseline plus, for pain images, the pain
    signal (its person's strength, plus ``gain`` for paincontrol, plus the arm's random effect
    by person, sd ``arm_person_sd``, and by seed, sd ``arm_seed_sd``) plus noise. With ``gain``
    0 the arms are exchangeable: the true AUC difference is 0. ``(results, predictions)``."""
    person = np.repeat(np.arange(n_people), per_person)
    pain = rng.random(len(person)) < 0.37
    baseline = rng.normal(0, 0.5, n_people)[person]
    strength = 1.0 + rng.normal(0, 0.5, n_people)[person]
    rows, prob = [], []
    for arm, shift in (("real", 0.0), ("paincontrol", gain)):
        by_person = rng.normal(0, arm_person_sd, n_people)[person]
        for seed in range(n_seeds):
            signal = strength + shift + by_person + rng.normal(0, arm_seed_sd)
            prob.append(pain * signal + baseline + rng.normal(0, 1, len(person)))
            rows.append({"detector": "cnn", "level": 1, "arm": arm, "seed": seed})
    return pd.DataFrame(rows), Predictions(np.stack(prob), pain, person.astype(str))


def check_bootstrap(n_datasets: int, settings: dict, seed: int = 0, alpha: float = 0.05,
                    **design) -> dict:  # fmt: skip
    """The rate at which :func:`inference` rejects a true null (``paincontrol`` and ``real``
    exchangeable, :func:`simulate_sweep` with ``design``) and how often its interval covers 0,
    over ``n_datasets`` datasets, each with its Monte Carlo 95 % Wilson interval."""
    rejected, covered = [], []
    claims = settings | {"claims": {"paincontrol_vs_real": [1]}}
    for i in range(n_datasets):
        results, predictions = simulate_sweep(np.random.default_rng([seed, i]), **design)
        test = inference(results, predictions, "cnn", claims, i)["claim"]
        test = test["paincontrol_vs_real"]["1"]
        rejected.append(test["p"] < alpha)
        covered.append(test["ci_low"] <= 0 <= test["ci_high"])

    def rate(flags):
        p, low, high = stats.wilson_interval(int(np.sum(flags)), len(flags))
        return {"rate": p, "mc_ci_low": low, "mc_ci_high": high, "n": len(flags)}

    return {"rejection_rate": rate(rejected), "coverage": rate(covered)}


def summarise(results: pd.DataFrame, blocks: dict | None = None) -> pd.DataFrame:
    """Mean AUC, F1 and PCC per (detector, level, arm) with 95 % intervals: for AUC the
    bootstrap over test people and seeds of :func:`inference` (``blocks``: detector -> its
    output), for F1 and PCC (and AUC without ``blocks``) a t-interval over seeds, which
    describes the seeds' spread only."""
    out = []
    for (detector, level, arm), group in results.groupby(["detector", "level", "arm"], sort=True):
        row = {"detector": detector, "level": level, "arm": arm, "n_seeds": len(group)}
        for metric in ("auc", "f1", "pcc"):
            row[f"{metric}_mean"], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = (
                stats.t_interval(group[metric].astype(float))
            )
        boot = (blocks or {}).get(detector, {}).get("cells", {}).get(str(level), {}).get(arm)
        if boot:  # the point and its interval from one computation
            row["auc_mean"] = boot["auc"]
            row["auc_ci_low"], row["auc_ci_high"] = boot["auc_ci_low"], boot["auc_ci_high"]
        out.append(row)
    return pd.DataFrame(out)


def mixed_model(results: pd.DataFrame, detector: str, metric: str = "auc"):
    """``metric ~ arm * level`` (levels and arms categorical, ``real`` the reference) with a
    random intercept per seed; :class:`~paincontrol_lib.stats.FitError` when it cannot be
    fitted or does not converge (fewer than two seeds or arms included)."""
    data = results[results["detector"] == detector].dropna(subset=[metric])
    if data["seed"].nunique() < 2 or data["arm"].nunique() < 2:
        raise stats.FitError(f"{detector}: the mixed model needs two seeds and two arms")
    formula = f"{metric} ~ C(arm, Treatment('real')) * C(level)"
    return stats.mixed_model(formula, data, groups=data["seed"])


def tests_table(blocks: dict) -> pd.DataFrame:
    """Every detector's claim block as one table: comparison, level, estimate [CI], p, Holm
    family and adjusted p, TOST p and the verdict."""
    rows = [
        {"detector": detector, "comparison": name, "level": int(level), **test}
        for detector, block in blocks.items()
        for name, levels in block["claim"].items()
        for level, test in levels.items()
    ]
    columns = None if rows else ["detector", "comparison", "level"]
    return pd.DataFrame(rows, columns=columns).set_index(["detector", "comparison", "level"])


_STATS = ("_mean", "_ci_low", "_ci_high", "n_seeds")


def metrics_json(summary: pd.DataFrame, blocks: dict, primary: str, settings: dict,
                 config: dict) -> dict:  # fmt: skip
    """``reports/metrics/augment.json`` (numpy and NaN are cleaned by ``io.write_json``): the
    primary detector's cells under ``levels`` (``summary`` of :func:`summarise` with
    ``blocks``), its claim and equivalence blocks, every detector under ``detectors``, and how
    it was all inferred."""

    def levels_of(detector):
        out = {}
        for row in summary[summary["detector"] == detector].itertuples(index=False):
            out.setdefault(str(row.level), {})[row.arm] = {
                key: getattr(row, key) for key in summary.columns if key.endswith(_STATS)
            }
        return out

    method = (
        f"bootstrap over test people and seeds together ({settings['n_bootstrap']} resamples, "
        "paired by person and seed): 95 % t-interval from its standard error (Welch-"
        "Satterthwaite df over people and seeds), two-sided p; TOST against "
        f"+-{settings['equivalence_margin']} AUC; Holm over the declared claims (difference and "
        "equivalence tests together) and separately over the exploratory cells"
    )
    claims = {name: [str(level) for level in levels]
              for name, levels in settings["claims"].items()}  # fmt: skip
    return {
        "primary_detector": primary,
        "levels": levels_of(primary),
        "claim": blocks[primary]["claim"] | {"method": method},
        "equivalence": blocks[primary]["equivalence"],
        "inference": {
            "method": method,
            "claims_family": claims,
            "alpha": settings["alpha"],
            "equivalence_margin": settings["equivalence_margin"],
            "n_bootstrap": settings["n_bootstrap"],
            "f1_pcc_intervals": "t over seeds (descriptive)",
        },  # fmt: skip
        "detectors": {
            d: {
                "levels": levels_of(d),
                "claim": block["claim"],
                "equivalence": block["equivalence"],
            }
            for d, block in blocks.items()
        },  # fmt: skip
        **config,
    }
