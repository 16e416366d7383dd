"""The pain detectors (a small CNN on crops, logistic/ridge on mesh features) and their test
scores."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from paincontrol_lib.seeds import stream

if TYPE_CHECKING:
    from paincontrol_lib.augment.bank import Images

DETECTORS = ("cnn", "mesh")


class MeshDetector:
    """Logistic regression (pain) and ridge (PSPI) on standardised, PCA-reduced mesh
    coordinates; pain classes weighted to balance."""

    def __init__(self, n_components: int = 20):
        self.n_components = n_components

    def fit(self, data: Images, seed: int) -> MeshDetector:
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        ok = ~np.isnan(data.features).any(axis=1)
        x, pspi = data.features[ok], data.pspi[ok]
        n = min(self.n_components, len(x) - 1, x.shape[1])
        self.reduce = make_pipeline(StandardScaler(), PCA(n, random_state=seed)).fit(x)
        z = self.reduce.transform(x)
        self.pain = LogisticRegression(class_weight="balanced", max_iter=2000).fit(z, pspi > 0)
        self.intensity = Ridge(alpha=1.0).fit(z, pspi)
        return self

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
    and no-pain images equally, so a handful of pain frames is not drowned out."""

    def __init__(self, steps: int = 150, batch_size: int = 64, learning_rate: float = 3e-3):
        self.steps, self.batch_size, self.learning_rate = steps, batch_size, learning_rate

    @staticmethod
    def _tensor(crops):
        import torch

        return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1

    def fit(self, data: Images, seed: int) -> CNNDetector:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # this net is faster on one thread (2.4 s vs 3.6 s per fit)
        try:
            return self._fit(data, seed)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, data: Images, seed: int) -> CNNDetector:
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
        self.net.train()
        for _ in range(self.steps):
            batch = np.concatenate([rng.choice(pain, half), rng.choice(calm, half)])
            out = self.net(x[batch])
            y = target[batch]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], y[:, 0])
            loss = loss + torch.nn.functional.mse_loss(out[:, 1], y[:, 1]) * 4
            opt.zero_grad()
            loss.backward()
            opt.step()
        return self

    def predict(self, data: Images) -> tuple[np.ndarray, np.ndarray]:
        """(pain probability, PSPI)."""
        import torch

        self.net.eval()
        with torch.no_grad():
            out = torch.cat([self.net(b) for b in self._tensor(data.crops).split(256)])
        return torch.sigmoid(out[:, 0]).numpy(), out[:, 1].numpy() * 16


def make_detector(name: str, params: dict):
    if name == "cnn":
        return CNNDetector(params["cnn_steps"], params["cnn_batch_size"])
    if name == "mesh":
        return MeshDetector(params["mesh_components"])
    raise ValueError(f"detector {name!r}: expected one of {DETECTORS}")


def detection_scores(pspi_true, prob, pspi_pred) -> dict[str, float | None]:
    """AUC and F1 (threshold 0.5) of pain detection, Pearson r of PSPI; rows without a
    prediction count as misses (probability 0, PSPI 0), so a detector cannot gain by failing."""
    from sklearn.metrics import f1_score, roc_auc_score

    y = np.asarray(pspi_true) > 0
    prob = np.nan_to_num(np.asarray(prob, float), nan=0.0)
    pspi_pred = np.nan_to_num(np.asarray(pspi_pred, float), nan=0.0)
    both = y.any() and (~y).any()
    varied = np.std(pspi_pred) > 0 and np.std(pspi_true) > 0
    return {
        "auc": float(roc_auc_score(y, prob)) if both else None,
        "f1": float(f1_score(y, prob >= 0.5, zero_division=0)),
        "pcc": float(np.corrcoef(pspi_true, pspi_pred)[0, 1]) if varied else None,
    }
