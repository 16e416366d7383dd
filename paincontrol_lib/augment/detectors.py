"""The pain detectors (a small CNN on crops, logistic/ridge on mesh features) and their test
scores.

Every setting a detector has is chosen on validation people, per fit, from what that fit was
given: the CNN's number of steps (early stopping on validation AUC), the mesh detector's number of
PCA components, and both detectors' decision threshold for F1. Nothing is fitted on data outside
the fit's own training set (so a scarce cell's detector learns nothing from withheld frames)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from paincontrol_lib.seeds import stream

if TYPE_CHECKING:
    from paincontrol_lib.augment.bank import Images

DETECTORS = ("cnn", "mesh")


def _validation_auc(detector, val: Images | None) -> float | None:
    """AUC of ``detector`` on the validation images, None without both classes there."""
    from sklearn.metrics import roc_auc_score

    if val is None or not ((val.pspi > 0).any() and (val.pspi <= 0).any()):
        return None
    prob = np.nan_to_num(detector.predict(val)[0], nan=0.0)
    return float(roc_auc_score(val.pspi > 0, prob))


def _validation_threshold(detector, val: Images | None) -> float:
    """The pain-probability threshold with the best F1 on the validation images (0.5 without
    them)."""
    from sklearn.metrics import precision_recall_curve

    if val is None or not (val.pspi > 0).any():
        return 0.5
    prob = np.nan_to_num(detector.predict(val)[0], nan=0.0)
    precision, recall, thresholds = precision_recall_curve(val.pspi > 0, prob)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))]) if len(thresholds) else 0.5


class MeshDetector:
    """Logistic regression (pain) and ridge (PSPI) on standardised, PCA-reduced mesh
    coordinates; pain classes weighted to balance. The number of components is chosen among
    ``components`` on validation AUC."""

    def __init__(self, components=(20,)):
        self.components = tuple(int(n) for n in np.atleast_1d(components))

    def fit(self, data: Images, seed: int, val: Images | None = None) -> MeshDetector:
        best = None
        for n in self.components:
            self._fit(data, seed, n)
            auc = _validation_auc(self, val)
            if best is None or (auc is not None and auc > best[0]):
                best = (auc if auc is not None else -np.inf, n)
        if best[1] != self.n_components:
            self._fit(data, seed, best[1])
        self.chosen = {"mesh_components": self.n_components}
        self.threshold = _validation_threshold(self, val)
        return self

    def _fit(self, data: Images, seed: int, n_components: int) -> None:
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        ok = ~np.isnan(data.features).any(axis=1)
        x, pspi = data.features[ok], data.pspi[ok]
        self.n_components = n_components
        n = min(n_components, len(x) - 1, x.shape[1])
        self.reduce = make_pipeline(StandardScaler(), PCA(n, random_state=seed)).fit(x)
        z = self.reduce.transform(x)
        self.pain = LogisticRegression(class_weight="balanced", max_iter=2000).fit(z, pspi > 0)
        self.intensity = Ridge(alpha=1.0).fit(z, pspi)

    def predict(self, data: Images) -> tuple[np.ndarray, np.ndarray]:
        """(pain probability, PSPI); NaN where the mesh is missing."""
        ok = ~np.isnan(data.features).any(axis=1)
        prob, pspi = np.full(len(data), np.nan), np.full(len(data), np.nan)
        if ok.any():
            z = self.reduce.transform(data.features[ok])
            prob[ok] = self.pain.predict_proba(z)[:, 1]
            pspi[ok] = self.intensity.predict(z)
        return prob, pspi


def _cnn():
    import torch.nn as nn

    def block(cin, cout, **kw):
        return [nn.Conv2d(cin, cout, **kw), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(3, 24, kernel_size=4, stride=4),  # 64 -> 16: patchify, cheap on a CPU
        *block(24, 48, kernel_size=3, stride=2, padding=1),
        *block(48, 64, kernel_size=3, stride=2, padding=1),
        *block(64, 64, kernel_size=3, padding=1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(64, 2),
    )  # fmt: skip


class CNNDetector:
    """A small CNN on 64 px crops with two outputs: pain logit and PSPI / 16. Batches draw pain
    and no-pain images equally, so a handful of pain frames is not drowned out. With validation
    images it is evaluated every ``eval_every`` steps and the weights with the best validation
    AUC are kept (early stopping); ``steps`` is the budget."""

    def __init__(self, steps: int = 150, batch_size: int = 64, learning_rate: float = 3e-3,
                 eval_every: int = 25):  # fmt: skip
        self.steps, self.batch_size, self.learning_rate = steps, batch_size, learning_rate
        self.eval_every = eval_every

    @staticmethod
    def _tensor(crops):
        import torch

        return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1

    def fit(self, data: Images, seed: int, val: Images | None = None) -> CNNDetector:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # this net is faster on one thread (2.4 s vs 3.6 s per fit)
        try:
            self._fit(data, seed, val)
            self.threshold = _validation_threshold(self, val)
            return self
        finally:
            torch.set_num_threads(threads)

    def _fit(self, data: Images, seed: int, val: Images | None) -> None:
        import copy

        import torch

        torch.manual_seed(seed)
        rng = stream("cnn_init", seed)
        pain = np.flatnonzero(data.pspi > 0)
        calm = np.flatnonzero(data.pspi <= 0)
        if not len(pain) or not len(calm):
            raise ValueError("the CNN needs pain and no-pain training images")
        x = self._tensor(data.crops)
        target = torch.from_numpy(np.stack([data.pspi > 0, data.pspi / 16], 1).astype(np.float32))
        self.net = _cnn()
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.learning_rate, weight_decay=1e-4)
        half = self.batch_size // 2
        best = (-np.inf, self.steps, None)
        for step in range(1, self.steps + 1):
            self.net.train()
            batch = np.concatenate([rng.choice(pain, half), rng.choice(calm, half)])
            out = self.net(x[batch])
            y = target[batch]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], y[:, 0])
            loss = loss + torch.nn.functional.mse_loss(out[:, 1], y[:, 1]) * 4
            opt.zero_grad()
            loss.backward()
            opt.step()
            if val is not None and (step % self.eval_every == 0 or step == self.steps):
                auc = _validation_auc(self, val)
                if auc is not None and auc > best[0]:
                    best = (auc, step, copy.deepcopy(self.net.state_dict()))
        if best[2] is not None:
            self.net.load_state_dict(best[2])
        self.chosen = {"cnn_steps": best[1]}

    def predict(self, data: Images) -> tuple[np.ndarray, np.ndarray]:
        """(pain probability, PSPI)."""
        import torch

        self.net.eval()
        with torch.no_grad():
            out = torch.cat([self.net(b) for b in self._tensor(data.crops).split(256)])
        return torch.sigmoid(out[:, 0]).numpy(), out[:, 1].numpy() * 16


def make_detector(name: str, params: dict):
    if name == "cnn":
        return CNNDetector(params["cnn_steps"], params["cnn_batch_size"],
                           eval_every=params.get("cnn_eval_every", 25))  # fmt: skip
    if name == "mesh":
        return MeshDetector(params["mesh_components"])
    raise ValueError(f"detector {name!r}: expected one of {DETECTORS}")


def detection_scores(pspi_true, prob, pspi_pred, threshold: float = 0.5) -> dict[str, float | None]:
    """AUC and F1 (at ``threshold``, chosen on validation people) of pain detection, Pearson r
    of PSPI; rows without a prediction count as misses (probability 0, PSPI 0), so a detector
    cannot gain by failing."""
    from sklearn.metrics import f1_score, roc_auc_score

    y = np.asarray(pspi_true) > 0
    prob = np.nan_to_num(np.asarray(prob, float), nan=0.0)
    pspi_pred = np.nan_to_num(np.asarray(pspi_pred, float), nan=0.0)
    both = y.any() and (~y).any()
    varied = np.std(pspi_pred) > 0 and np.std(pspi_true) > 0
    return {
        "auc": float(roc_auc_score(y, prob)) if both else None,
        "f1": float(f1_score(y, prob >= threshold, zero_division=0)),
        "pcc": float(np.corrcoef(pspi_true, pspi_pred)[0, 1]) if varied else None,
    }
