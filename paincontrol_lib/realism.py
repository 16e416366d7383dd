"""Realism of generated faces, measured in a feature space made for faces like these, against
a reference where the answer is known: the exact answers of the same requests.

Inception FID needs weights this compendium cannot download, and dlib's identity embedding
measures *who* is in the picture, not whether it looks real. So the features are those of a
small network trained here, on training-split people only (:class:`FaceFeatures`): a CNN on the
aligned 64 px crops every method produces, taught to read AU intensities and nothing about who
the person is.

Every metric is computed so that a perfect method, one that returns the exact answers, scores
its floor (a test feeds the exact answers as a method and requires it). So the reference is the
exact answers themselves, output ``i`` paired with the truth of the request it answers: against
other people's frames (the earlier design) the exact answers scored FD 2.0 and precision 0.00,
that is, a perfect method failed.

- Fréchet distance (FD) between Gaussians fitted to the two feature sets (0 for the truth);
- kernel inception distance (KID): MMD² with the cubic polynomial kernel over random subsets,
  with a percentile interval over the subsets (Bińkowski et al. 2018); paired, the subsets take
  the same requests on both sides and the U-statistic leaves out each pair's own cross term
  (Gretton et al. 2012), so the truth scores exactly 0;
- precision and recall of the k-NN manifolds (Kynkäänniemi et al. 2019), each ball's radius
  measured to other people only: a person's near-duplicate frames would otherwise shrink the
  radii to nothing (1 for the truth);
- the paired classifier two-sample test (:func:`paired_two_sample_auc`; 0.5 for the truth).

The network's input path and training are fixed by seed; its description is recorded beside the
numbers (``realism.features``).
"""

from __future__ import annotations

import numpy as np

from paincontrol_lib.seeds import stream

CROP = 64  # px of the aligned crops the network reads


def _network(n_aus: int):
    import torch.nn as nn

    def block(cin, cout, **kw):
        return [nn.Conv2d(cin, cout, **kw), nn.BatchNorm2d(cout), nn.ReLU()]

    trunk = nn.Sequential(
        *block(3, 32, kernel_size=4, stride=2, padding=1),  # 64 -> 32
        *block(32, 64, kernel_size=3, stride=2, padding=1),  # -> 16
        *block(64, 96, kernel_size=3, stride=2, padding=1),  # -> 8
        *block(96, 128, kernel_size=3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return trunk, nn.Linear(128, n_aus)


class FaceFeatures:
    """A 128-d face feature extractor trained on one split's people: AU-intensity regression
    (AUs / 5) on their aligned crops, mirrored at random."""

    def __init__(self, steps: int = 300, batch_size: int = 64, learning_rate: float = 2e-3):
        self.steps, self.batch_size, self.learning_rate = steps, batch_size, learning_rate

    @staticmethod
    def _tensor(crops):
        import torch

        return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1

    def fit(self, crops: np.ndarray, people, aus: np.ndarray, seed: int) -> FaceFeatures:
        """``crops`` (n, 64, 64, 3) uint8, ``people`` (n,) labels (counted, never learnt),
        ``aus`` (n, k) FACS 0-5."""
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # deterministic and, for this small net, as fast
        try:
            torch.manual_seed(seed)
            rng = stream("realism_features", seed)
            n_people = len(np.unique(np.asarray(people)))
            x = self._tensor(crops)
            y_au = torch.from_numpy(np.nan_to_num(np.asarray(aus, np.float32)) / 5)
            self.trunk, au_head = _network(y_au.shape[1])
            params = [*self.trunk.parameters(), *au_head.parameters()]
            opt = torch.optim.AdamW(params, lr=self.learning_rate, weight_decay=1e-4)
            self.trunk.train()
            for _ in range(self.steps):
                batch = rng.integers(0, len(x), self.batch_size)
                flip = torch.from_numpy(rng.random(self.batch_size) < 0.5)
                images = torch.where(flip[:, None, None, None], x[batch].flip(-1), x[batch])
                loss = torch.nn.functional.mse_loss(au_head(self.trunk(images)), y_au[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
            self.trunk.eval()
            self.description = (
                f"CNN (4 conv blocks, 128-d) trained {self.steps} steps on {len(x)} aligned "
                f"{CROP} px crops of {n_people} training-split people to read "
                f"{y_au.shape[1]} AU intensities (no identity)"
            )
            return self
        finally:
            torch.set_num_threads(threads)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return np.concatenate(
                [
                    self.trunk(self._tensor(crops[i : i + 256])).numpy()
                    for i in range(0, len(crops), 256)
                ]
            )


def frechet_distance(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` (n, d) and ``b`` (m, d):
    0 (to rounding) for identical sets; ``eps`` on the diagonals only where the product of the
    covariances has no finite square root (as pytorch-fid)."""
    from scipy import linalg

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("the Fréchet distance needs at least 2 samples on each side")
    mu, nu = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = eps * np.eye(len(mu))
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(((mu - nu) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
    n, m = len(x), len(y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * kxy.mean()
    )


def _mmd2_paired(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² of paired samples (x_i answers the request of y_i): the U-statistic over
    i != j of k(x_i, x_j) + k(y_i, y_j) - k(x_i, y_j) - k(x_j, y_i); exactly 0 when x == y."""
    d = x.shape[1]
    kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
    h = kxx + kyy - kxy - kxy.T
    m = len(x)
    return float((h.sum() - np.trace(h)) / (m * (m - 1)))


def kid(generated, real, n_subsets: int = 100, subset_size: int = 100, seed: int = 0,
        paired: bool = False):  # fmt: skip
    """KID: mean unbiased MMD² over ``n_subsets`` random subsets (without replacement), with the
    2.5 / 97.5 percentiles over subsets as its interval; ``(kid, low, high)``. ``paired``: row
    ``i`` of ``generated`` answers row ``i`` of ``real``; each subset takes the same rows on both
    sides (:func:`_mmd2_paired`)."""
    generated, real = np.asarray(generated, float), np.asarray(real, float)
    if paired and generated.shape != real.shape:
        raise ValueError(f"paired KID: {generated.shape} and {real.shape} must match")
    size = min(subset_size, len(generated), len(real))
    if size < 2:
        raise ValueError("KID needs at least 2 samples on each side")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_subsets):
        if paired:
            rows = rng.choice(len(generated), size, replace=False)
            values.append(_mmd2_paired(generated[rows], real[rows]))
        else:
            mine = generated[rng.choice(len(generated), size, replace=False)]
            values.append(_mmd2_unbiased(mine, real[rng.choice(len(real), size, replace=False)]))
    values = np.array(values)
    low, high = np.percentile(values, [2.5, 97.5])
    return float(values.mean()), float(low), float(high)


def _knn_radii(x: np.ndarray, k: int, groups=None) -> np.ndarray:
    """Distance of each point to its ``k``-th nearest neighbour, among points of other
    ``groups`` only where groups are given (a person's near-duplicates do not count)."""
    distances = np.linalg.norm(x[:, None] - x[None], axis=-1)
    if groups is None:
        return np.sort(distances, axis=1)[:, k]  # column 0 is the point itself
    groups = np.asarray(groups)
    distances[groups[:, None] == groups[None]] = np.inf
    return np.sort(distances, axis=1)[:, k - 1]


def precision_recall(generated, real, k: int = 3, groups=None,
                     generated_groups=None) -> tuple[float, float]:  # fmt: skip
    """Improved precision (generated inside real k-NN balls) and recall (real inside
    generated k-NN balls). With ``groups`` (the person of each real row) and
    ``generated_groups`` (of each generated row), a ball's radius is the distance to the
    ``k``-th nearest point of another person."""
    generated, real = np.asarray(generated, float), np.asarray(real, float)
    if (groups is None) != (generated_groups is None):
        raise ValueError("give the people of both sides, or of neither")
    if groups is None:
        k = min(k, len(generated) - 1, len(real) - 1)
    else:
        others = min(_fewest_others(groups), _fewest_others(generated_groups))
        k = min(k, others)
    if k < 1:
        raise ValueError("precision / recall need at least 2 samples (people) on each side")

    def covered(points, manifold, manifold_groups):
        radii = _knn_radii(manifold, k, manifold_groups)
        distances = np.linalg.norm(points[:, None] - manifold[None], axis=-1)
        return float((distances <= radii[None]).any(1).mean())

    return covered(generated, real, groups), covered(real, generated, generated_groups)


def _fewest_others(groups) -> int:
    """The fewest rows of other groups any row has."""
    _, counts = np.unique(np.asarray(groups), return_counts=True)
    return int(len(groups) - counts.max())


def realism_scores(generated: np.ndarray, real: np.ndarray, seed: int, groups=None) -> dict:
    """FD, KID with its interval, precision and recall of one method's features. With
    ``groups`` (the target person of each row) the design is paired: row ``i`` of ``generated``
    answers the request whose exact answer is row ``i`` of ``real`` (paired KID, radii to other
    people)."""
    paired = groups is not None
    value, low, high = kid(generated, real, seed=seed, paired=paired)
    precision, recall = precision_recall(generated, real, groups=groups, generated_groups=groups)
    return {
        "fd": frechet_distance(generated, real),
        "kid": value,
        "kid_ci_low": low,
        "kid_ci_high": high,
        "precision": precision,
        "recall": recall,
        "n_generated": int(len(generated)),
        "n_real": int(len(real)),
    }


def paired_two_sample_auc(generated, truth, groups, n_folds: int = 5) -> float | None:
    """Can a classifier tell a method's outputs from the exact answers to the same requests?
    Logistic regression on standardised features, cross-validated with whole people held out
    (``groups``: the target person of each pair), scored by ROC AUC on the held-out folds:
    0.5 = indistinguishable in this feature space, 1 = always told apart. None when fewer than
    two people or no finite pair."""
    held_out = _held_out_scores(generated, truth, groups, n_folds)
    if held_out is None:
        return None
    from sklearn.metrics import roc_auc_score

    y, scores, _ = held_out
    return float(roc_auc_score(y, scores))


def paired_two_sample_auc_ci(generated, truth, groups, n_boot: int = 1000, seed: int = 0,
                             n_folds: int = 5) -> dict | None:  # fmt: skip
    """:func:`paired_two_sample_auc` with a 95 % interval over people: the held-out scores
    resampled by whole people (the classifiers stay as fitted). ``{auc, ci_low, ci_high}``."""
    from sklearn.metrics import roc_auc_score

    held_out = _held_out_scores(generated, truth, groups, n_folds)
    if held_out is None:
        return None
    y, scores, g = held_out
    people = np.unique(g)
    rows = [np.flatnonzero(g == person) for person in people]
    rng = stream("c2st_people", seed)
    draws = []
    for _ in range(n_boot):
        picked = np.concatenate([rows[i] for i in rng.integers(0, len(people), len(people))])
        draws.append(_rank_auc(y[picked], scores[picked]))
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"auc": float(roc_auc_score(y, scores)), "ci_low": float(low), "ci_high": float(high)}


def _rank_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count half): ``roc_auc_score``'s value
    without its per-call checks, for the thousand resamples of an interval."""
    from scipy.stats import rankdata

    positive = labels == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _held_out_scores(generated, truth, groups, n_folds: int):
    """``(labels, held-out classifier scores, people)`` of the paired two-sample test, or None
    with fewer than two people."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    generated, truth = np.asarray(generated, float), np.asarray(truth, float)
    groups = np.asarray(groups)
    if generated.shape != truth.shape or len(groups) != len(generated):
        raise ValueError(f"paired {generated.shape} / {truth.shape}, groups {groups.shape}")
    ok = np.isfinite(generated).all(1) & np.isfinite(truth).all(1)
    generated, truth, groups = generated[ok], truth[ok], groups[ok]
    n_people = len(np.unique(groups))
    if n_people < 2:
        return None
    x = np.vstack([generated, truth])
    y = np.r_[np.ones(len(generated)), np.zeros(len(truth))]
    g = np.r_[groups, groups]
    scores = np.full(len(x), np.nan)
    for train, held in GroupKFold(min(n_folds, n_people)).split(x, y, g):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
        scores[held] = model.fit(x[train], y[train]).predict_proba(x[held])[:, 1]
    return y, scores, g
