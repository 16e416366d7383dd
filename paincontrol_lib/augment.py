"""Downstream pain detection and the data-scarcity augmentation experiment (stage 05).

The paper's practical claim: synthetic pain faces do not help a pain detector when real pain
data is plentiful, but do when it is very scarce. The experiment here:

- **Subject-independent**: detectors train on training-split people and are scored on the
  held-out (test-split) people, who were never seen by the generator either. Synthetic images
  transfer training people's expressions onto *new* identities (fresh SynthPain people, or
  training people's neutral faces on real data), never onto a test person.
  :func:`check_no_leakage` enforces this on every fit.
- **Scarcity**: every training person keeps their no-pain frames (no-pain data is cheap); the
  pain frames (PSPI > 0) of only ``k`` people are kept. For each seed the people are taken in a
  seeded order, so the levels are nested.
- **Arms**: ``real`` only; ``real`` + synthetic from ``paincontrol`` or the ``warp`` baseline;
  ``classic`` augmentation (flips, small affine and photometric jitter of the same real frames).
  Each synthetic "pair" is one available pain sequence put on one new identity (its neutral
  frame and ``pain_frames`` frames spread over its pain intensities); each cell adds the same
  number of pairs (``pairs_per_cell``), spread evenly over the available sequences, so the
  synthetic set is large relative to the real pain when that is scarce and small when it is not.
- **Detectors**: a small CNN on 64 px aligned crops and a logistic/ridge model on aligned
  MediaPipe mesh features; both predict pain (PSPI > 0) and PSPI. Every image, real or
  synthetic, reaches both detectors through the same path (64 px crop -> features).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from paincontrol_lib.landmarks import align, aligned_crop, load_image, row_transform

ARMS = ("real", "paincontrol", "warp", "classic")
SYNTHETIC_ARMS = ("paincontrol", "warp", "classic")
DETECTORS = ("cnn", "mesh")
CROP = 64  # px of every image the detectors see
MESH_UPSCALE = 128  # crops are upscaled this far before MediaPipe meshes them
_N_FEATURES = 468 * 2  # canonical (x, y) of MediaPipe's mesh points, irises left out


class SubjectLeakageError(ValueError):
    """A person (or a synthetic image made from or onto them) is on both sides of a split."""


# ----------------------------------------------------------------------------- splits


def subject_split(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Training and test people from the landmark table's ``split`` column (detected rows)."""
    rows = table[table["detected"]]
    train = sorted(rows.loc[rows["split"] == "train", "subject"].unique())
    test = sorted(rows.loc[rows["split"] == "test", "subject"].unique())
    if not train or not test:
        raise ValueError(
            f"the landmark table needs detected train and test people (has {len(train)} train, "
            f"{len(test)} test)"
        )
    check_no_leakage(train, test)
    return train, test


def check_no_leakage(train_people, test_people, synthetic_people=()) -> None:
    """Raise :class:`SubjectLeakageError` when a test person appears in training, directly or
    as the source or target of a synthetic training image."""
    test = set(test_people)
    for what, people in (("training", train_people), ("synthetic", synthetic_people)):
        shared = sorted(set(people) & test)
        if shared:
            raise SubjectLeakageError(f"{what} data contains test people {shared}")


def pain_people(table: pd.DataFrame, people) -> list[str]:
    """The people among ``people`` with at least one detected pain frame (PSPI > 0)."""
    rows = table[table["detected"] & table["subject"].isin(list(people)) & (table["PSPI"] > 0)]
    return sorted(rows["subject"].unique())


def resolve_levels(levels, n_pain_people: int) -> list[int]:
    """Numbers of real pain people per level: ints and ``"all"``, deduplicated, ascending."""
    out = set()
    for level in levels:
        k = n_pain_people if level == "all" else level
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"scarcity level {level!r}: expected a positive integer or 'all'")
        if k > n_pain_people:
            raise ValueError(
                f"scarcity level {k} exceeds the {n_pain_people} training people with pain frames"
            )
        out.add(k)
    if not out:
        raise ValueError("no scarcity levels given")
    return sorted(out)


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


def _code(text: str) -> int:
    return zlib.crc32(text.encode())


@dataclass(frozen=True)
class Cell:
    """One point of the sweep: which people's pain is real, and which synthetic pairs to add."""

    level: int
    seed: int
    pain_people: tuple[str, ...]
    pairs: tuple[tuple[str, int], ...]  # (source pain sequence, new-identity index)


def pain_sequences(table: pd.DataFrame, people) -> list[str]:
    rows = table[table["detected"] & table["subject"].isin(list(people))]
    peaks = rows.groupby("sequence")["PSPI"].max()
    return sorted(peaks[peaks > 0].index)


def plan_cells(table, train_people, levels, seeds, pairs_per_cell: int, n_targets: int,
               base_seed: int) -> list[Cell]:  # fmt: skip
    """Every (level, seed) cell. Per seed the pain people come in one seeded order (levels are
    nested); each available pain sequence goes onto ``ceil(pairs / sequences)`` new identities
    in a fixed per-sequence order, ``pairs_per_cell`` pairs in all."""
    if pairs_per_cell < 0 or n_targets < 1:
        raise ValueError("pairs_per_cell must be >= 0 and n_targets >= 1")
    candidates = pain_people(table, train_people)
    cells = []
    for seed in seeds:
        order = [candidates[i] for i in _rng(base_seed, seed, 0xA06).permutation(len(candidates))]
        for level in resolve_levels(levels, len(candidates)):
            people = tuple(sorted(order[:level]))
            sequences = pain_sequences(table, people)
            per_sequence = min(n_targets, math.ceil(pairs_per_cell / max(1, len(sequences))))
            # Round robin over the sequences (each one's new identities in a fixed order), the
            # last round cut by a fixed per-sequence priority: balanced, and cells with the same
            # people share their synthetic images, so fewer need generating.
            ranked = sorted(
                (rank, _rng(base_seed, _code(sequence), 1).random(), sequence, int(target))
                for sequence in sequences
                for rank, target in enumerate(
                    _rng(base_seed, _code(sequence)).permutation(n_targets)[:per_sequence]
                )
            )
            pairs = sorted((sequence, target) for *_, sequence, target in ranked[:pairs_per_cell])
            cells.append(Cell(level, seed, people, tuple(pairs)))
    return cells


def real_training_rows(table: pd.DataFrame, train_people, cell_pain_people) -> pd.DataFrame:
    """Every training person's no-pain frames plus the pain frames of ``cell_pain_people``."""
    rows = table[table["detected"] & table["subject"].isin(list(train_people))]
    return rows[(rows["PSPI"] <= 0) | rows["subject"].isin(list(cell_pain_people))]


def pair_frames(table: pd.DataFrame, sequence: str, pain_frames: int) -> pd.DataFrame:
    """The frames a pair carries: the sequence's first no-pain frame and ``pain_frames`` pain
    frames spread over its intensities (apex included)."""
    rows = table[(table["sequence"] == sequence) & table["detected"]].sort_values("frame")
    calm, pain = rows[rows["PSPI"] <= 0], rows[rows["PSPI"] > 0]
    if calm.empty or pain.empty:
        raise ValueError(f"sequence {sequence} needs a no-pain and a pain frame")
    pain = pain.sort_values(["PSPI", "frame"])
    picks = np.unique(np.linspace(len(pain) - 1, 0, min(pain_frames, len(pain))).round())
    return pd.concat([calm.iloc[:1], pain.iloc[picks.astype(int)]])


# ----------------------------------------------------------------------------- images


def crop_of(row, size: int = CROP) -> np.ndarray:
    """A landmark-table row's face in the canonical frame at ``size`` px."""
    return aligned_crop(load_image(row["image"]), row_transform(row), size)


def classic_augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A label-preserving jitter: mirror, +-8 deg, +-8 % scale, +-3 px shift, +-15 %
    brightness and contrast, sensor noise."""
    import cv2

    h, w = image.shape[:2]
    out = image[:, ::-1] if rng.random() < 0.5 else image
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-8, 8), rng.uniform(0.92, 1.08))
    matrix[:, 2] += rng.uniform(-3, 3, 2)
    out = cv2.warpAffine(np.ascontiguousarray(out), matrix, (w, h),
                         borderMode=cv2.BORDER_REPLICATE).astype(np.float64)  # fmt: skip
    mean = out.mean()
    out = (out - mean) * rng.uniform(0.85, 1.15) + mean * rng.uniform(0.85, 1.15)
    out += rng.normal(0, 3, out.shape)
    return np.clip(out, 0, 255).round().astype(np.uint8)


def new_synthpain_faces(data_dir, n: int, seed: int, mesher) -> list:
    """Neutral faces of ``n`` SynthPain people rendered with ``seed`` (not the dataset's own
    seed, so none of them is a person of the dataset), meshed by MediaPipe like any photo."""
    from dataclasses import replace

    from paincontrol_lib.data.synthpain.generate import load_config, render_exact
    from paincontrol_lib.transfer import read_face

    config = load_config(data_dir)
    if seed == config.seed:
        raise SubjectLeakageError(
            f"new_identity_seed {seed} is the dataset's own seed: the 'new' people would be the "
            "dataset's people (test people included)"
        )
    config = replace(config, seed=seed, n_identities=max(2, n))  # SynthPainConfig needs >= 2
    return [
        read_face(render_exact(config, f"S{i:03d}", {}).image, mesher, name=f"new{i:03d}")
        for i in range(n)
    ]


def training_people_faces(table: pd.DataFrame, train_people) -> list:
    """Neutral reference faces of the training people (the target pool on real data)."""
    from paincontrol_lib.transfer_stage import face_of

    rows = table[table["neutral_reference"] & table["detected"]]
    rows = rows[rows["subject"].isin(list(train_people))].drop_duplicates("subject")
    return [face_of(row) for _, row in rows.iterrows()]


@dataclass
class Images:
    """A set of detector inputs with their labels and provenance."""

    crops: np.ndarray  # (n, CROP, CROP, 3) uint8
    pspi: np.ndarray  # (n,) float
    source: np.ndarray  # (n,) person whose expression (and, for real frames, face) it is
    identity: np.ndarray  # (n,) person whose face it shows
    features: np.ndarray | None = None  # (n, d) mesh features, NaN rows where none was found

    def __len__(self) -> int:
        return len(self.pspi)

    def subset(self, index) -> Images:
        index = np.asarray(index, dtype=int)
        features = None if self.features is None else self.features[index]
        return Images(self.crops[index], self.pspi[index], self.source[index],
                      self.identity[index], features)  # fmt: skip

    @staticmethod
    def empty() -> Images:
        none = np.zeros(0, object)
        return Images(np.zeros((0, CROP, CROP, 3), np.uint8), np.zeros(0), none, none,
                      np.zeros((0, _N_FEATURES)))  # fmt: skip

    @staticmethod
    def concat(parts: list[Images]) -> Images:
        parts = [p for p in parts if len(p)]
        return Images(
            np.concatenate([p.crops for p in parts]),
            np.concatenate([p.pspi for p in parts]),
            np.concatenate([p.source for p in parts]),
            np.concatenate([p.identity for p in parts]),
            None if any(p.features is None for p in parts)
            else np.concatenate([p.features for p in parts]),
        )  # fmt: skip


def mesh_features(crops: np.ndarray, mesher) -> np.ndarray:
    """Canonical-frame (x, y) of the 468 mesh points of each crop (MediaPipe on the crop
    upscaled to :data:`MESH_UPSCALE` px); NaN rows where no face was found."""
    from paincontrol_lib import facemesh
    from paincontrol_lib.evaluate import upscale

    out = np.full((len(crops), _N_FEATURES), np.nan)
    for i, crop in enumerate(crops):
        found = mesher(upscale(crop, MESH_UPSCALE))
        if found.detected:
            out[i] = align(found.landmarks)[0][: facemesh.N_MESH_POINTS, :2].ravel()
    return out


def real_images(rows: pd.DataFrame) -> Images:
    subjects = rows["subject"].to_numpy()
    return Images(np.stack([crop_of(r) for _, r in rows.iterrows()]),
                  rows["PSPI"].to_numpy(float), subjects, subjects)  # fmt: skip


@dataclass
class SyntheticBank:
    """Synthetic images per (method, pair), generated once and shared by every cell.

    ``paincontrol`` and ``warp`` transfer the pair's frames (``delta`` retargeting) onto new
    identity ``targets[i]`` with one shared seed per identity; ``classic`` jitters the source's
    own frames instead. Labels are the source frames' PSPI.
    """

    table: pd.DataFrame
    targets: list
    pain_frames: int
    seed: int
    images: dict = field(default_factory=dict)  # (method, pair) -> Images
    _expressions: dict = field(default_factory=dict, repr=False)  # pair -> [Retargeted]
    _rows: dict = field(default_factory=dict, repr=False)  # sequence -> its pair_frames rows

    def _frames(self, sequence):
        if sequence not in self._rows:
            self._rows[sequence] = pair_frames(self.table, sequence, self.pain_frames)
        return self._rows[sequence]

    def build(self, engine, pairs, methods) -> dict[str, float]:
        """Generate every missing (method, pair), one model call per new identity; returns
        seconds spent per method."""
        import time

        seconds = {}
        for method in methods:
            start = time.perf_counter()
            todo = [p for p in sorted(set(pairs)) if (method, p) not in self.images]
            if method == "classic":
                for pair in todo:
                    self.images[method, pair] = self._classic(pair)
            else:
                for target in sorted({t for _, t in todo}):
                    group = [p for p in todo if p[1] == target]
                    self.images.update(self._transfer(engine, method, target, group))
            seconds[method] = time.perf_counter() - start
        return seconds

    def _classic(self, pair) -> Images:
        rows = self._frames(pair[0])
        rng = _rng(self.seed, _code(pair[0]), pair[1])
        crops = np.stack([classic_augment(crop_of(r), rng) for _, r in rows.iterrows()])
        return self._images(rows, crops, rows["subject"])

    def _retargeted(self, pair, size: int) -> list:
        """The pair's source frames retargeted (``delta``) onto its new identity; computed once
        and shared by the methods."""
        from paincontrol_lib.retarget import retarget
        from paincontrol_lib.transfer_stage import mesh_of, neutral_row

        if pair not in self._expressions:
            face, rows = self.targets[pair[1]], self._frames(pair[0])
            neutral = mesh_of(neutral_row(self.table, rows["subject"].iloc[0]))
            self._expressions[pair] = [
                retarget("delta", face.landmarks, source=mesh_of(r), source_neutral=neutral,
                         size=size)
                for _, r in rows.iterrows()
            ]  # fmt: skip
        return self._expressions[pair]

    def _transfer(self, engine, method, target, group) -> dict:
        face = self.targets[target]
        frames = [self._frames(sequence) for sequence, _ in group]
        expressions = [e for pair in group for e in self._retargeted(pair, engine.size)]
        crops = engine.generate(method, face, expressions, seed=self.seed + 1 + target,
                                shared_noise=True)  # fmt: skip
        if crops.shape[1] != CROP:
            from paincontrol_lib.evaluate import upscale

            crops = np.stack([upscale(c, CROP) for c in crops])
        bounds = np.cumsum([0] + [len(rows) for rows in frames])
        return {
            (method, pair): self._images(rows, crops[a:b], [face.name] * len(rows))
            for pair, rows, a, b in zip(group, frames, bounds[:-1], bounds[1:], strict=True)
        }

    @staticmethod
    def _images(rows, crops, identity) -> Images:
        return Images(np.asarray(crops), rows["PSPI"].to_numpy(float),
                      rows["subject"].to_numpy(), np.asarray(identity))  # fmt: skip

    def add_features(self, mesher) -> None:
        for images in self.images.values():
            if images.features is None:
                images.features = mesh_features(images.crops, mesher)

    def get(self, method: str, pairs) -> Images:
        return synthetic_images(self.images, method, pairs)


def synthetic_images(images: dict, method: str, pairs) -> Images:
    """The synthetic images of ``pairs`` made by ``method``, from a bank's ``images`` dict."""
    missing = [p for p in pairs if (method, p) not in images]
    if missing:
        raise KeyError(f"{method} pairs not generated: {missing[:3]}")
    return Images.concat([images[method, p] for p in pairs]) if pairs else Images.empty()


# ----------------------------------------------------------------------------- detectors


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
        rng = _rng(seed, 0xC22)
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


# ----------------------------------------------------------------------------- the sweep


_SWEEP: dict = {}  # what every cell's fits read: set once per process by _start_sweep


def _start_sweep(job: dict) -> None:
    _SWEEP.clear()
    _SWEEP.update(job)
    _SWEEP["index"] = {key: i for i, key in enumerate(job["train_keys"])}


def _fit_cell(cell: Cell) -> list[dict]:
    job, rows = _SWEEP, []
    keep = real_training_rows(job["table_train"], job["train_people"], cell.pain_people)
    real = job["real_train"].subset([job["index"][k] for k in keep["image"]])
    for arm in job["arms"]:
        extra = Images.empty() if arm == "real" else synthetic_images(job["synthetic"], arm,
                                                                       cell.pairs)  # fmt: skip
        check_no_leakage(set(real.identity) | set(extra.source), job["test_people"],
                         set(extra.identity))  # fmt: skip
        data = Images.concat([real, extra])
        for name in job["detectors"]:
            fit_seed = int(_rng(cell.seed, cell.level, 0xF17).integers(2**31))
            detector = make_detector(name, job["params"]).fit(data, fit_seed)
            scores = detection_scores(job["test"].pspi, *detector.predict(job["test"]))
            rows.append({
                "detector": name, "level": cell.level, "arm": arm, "seed": cell.seed,
                **scores, "n_real": len(real), "n_real_pain": int((real.pspi > 0).sum()),
                "n_synthetic": len(extra), "n_synthetic_pain": int((extra.pspi > 0).sum()),
            })  # fmt: skip
    return rows


def run_sweep(real_train: Images, table_train: pd.DataFrame, test: Images, synthetic: dict,
              cells, train_people, test_people, arms, detectors, params,
              workers: int = 1) -> pd.DataFrame:  # fmt: skip
    """Fit every (detector, cell, arm) and score it on the test people: one row per fit.

    ``synthetic`` maps (method, pair) to :class:`Images` (a bank's ``images``). Cells run in
    ``workers`` spawned processes (MediaPipe-safe); every fit is seeded and single-threaded,
    so the rows do not depend on ``workers``.
    """
    job = {
        "real_train": real_train, "train_keys": list(table_train["image"]),
        "table_train": table_train[["subject", "image", "PSPI", "detected"]],
        "test": test, "synthetic": synthetic, "train_people": list(train_people),
        "test_people": list(test_people), "arms": list(arms), "detectors": list(detectors),
        "params": dict(params),
    }  # fmt: skip
    if workers > 1 and len(cells) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(cells)), mp_context=context,
                                 initializer=_start_sweep, initargs=(job,)) as pool:  # fmt: skip
            per_cell = list(pool.map(_fit_cell, cells))
    else:
        _start_sweep(job)
        per_cell = [_fit_cell(cell) for cell in cells]
    return pd.DataFrame([row for rows in per_cell for row in rows])


# ----------------------------------------------------------------------------- statistics


def t_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and t-based confidence interval over seeds (NaNs dropped)."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    if len(v) == 1:
        return float(v[0]), math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95 % CI over seeds of AUC, F1 and PCC per (detector, level, arm)."""
    out = []
    for (detector, level, arm), group in results.groupby(["detector", "level", "arm"], sort=True):
        row = {"detector": detector, "level": level, "arm": arm, "n_seeds": len(group)}
        for metric in ("auc", "f1", "pcc"):
            row[f"{metric}_mean"], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = t_interval(
                group[metric].astype(float)
            )
        out.append(row)
    return pd.DataFrame(out)


def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels' ``multipletests``, as in stage 04); NaNs, from
    tests that could not be run, are left out of the family and stay NaN."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, float)
    adjusted = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        adjusted[ok] = multipletests(p[ok], method="holm")[1]
    return adjusted


def arm_tests(results: pd.DataFrame, baseline: str = "real", metric: str = "auc") -> pd.DataFrame:
    """Per (detector, level, arm): mean gain over ``baseline`` and a paired t-test across seeds
    (same seed = same real pain people and detector initialisation). Holm's correction runs
    over the levels of each (detector, arm): one family per claim "this augmentation helps"."""
    from scipy import stats

    out = []
    for (detector, level), group in results.groupby(["detector", "level"], sort=True):
        wide = group.pivot(index="seed", columns="arm", values=metric).astype(float)
        for arm in wide.columns.drop(baseline, errors="ignore"):
            diff = (wide[arm] - wide[baseline]).dropna()
            p = stats.ttest_1samp(diff, 0).pvalue if len(diff) > 1 and diff.std() > 0 else math.nan
            out.append({"detector": detector, "level": level, "arm": arm,
                        "gain": float(diff.mean()) if len(diff) else math.nan,
                        "n_pairs": len(diff), "p": float(p)})  # fmt: skip
    tests = pd.DataFrame(out)
    if not tests.empty:
        tests["p_holm"] = tests.groupby(["detector", "arm"])["p"].transform(holm)
    return tests


def mixed_model(results: pd.DataFrame, detector: str, metric: str = "auc"):
    """``metric ~ arm * level`` (levels and arms categorical, ``real`` the reference) with a
    random intercept per seed; None when it cannot be fitted."""
    import warnings

    import statsmodels.formula.api as smf

    data = results[results["detector"] == detector].dropna(subset=[metric])
    if data["seed"].nunique() < 2 or data["arm"].nunique() < 2:
        return None
    formula = f"{metric} ~ C(arm, Treatment('real')) * C(level)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return smf.mixedlm(formula, data, groups=data["seed"]).fit()
        except (ValueError, np.linalg.LinAlgError):
            return None


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


# ----------------------------------------------------------------------------- stage 05


def run_augmentation_stage(table: pd.DataFrame, model, params: dict, seed: int,
                           synthpain_dir=None, workers: int = 1) -> dict:  # fmt: skip
    """Stage 05 in one call: plan the cells, generate the synthetic bank once, fit and score
    every (detector, cell, arm). Returns frames, timings, sample panels and the metrics dict."""
    import time

    from paincontrol_lib.landmarks import FaceMesher
    from paincontrol_lib.transfer import Transfer

    arms, detectors = list(params["arms"]), list(params["detectors"])
    for what, given, known in (("arm", arms, ARMS), ("detector", detectors, DETECTORS)):
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ValueError(f"unknown {what}s {unknown}; expected some of {known}")
    if "real" not in arms:
        raise ValueError("arms must include 'real', the baseline every other arm is tested against")
    if params["primary_detector"] not in detectors:
        raise ValueError(f"primary_detector {params['primary_detector']!r} is not in {detectors}")
    timing = {}
    start = time.perf_counter()
    train_people, test_people = subject_split(table)
    seeds = [seed + i for i in range(params["n_seeds"])]
    with FaceMesher() as mesher:
        if params["targets"] == "new_synthpain":
            if synthpain_dir is None:
                raise ValueError("targets 'new_synthpain' needs the SynthPain folder")
            targets = new_synthpain_faces(synthpain_dir, params["n_new_identities"],
                                          params["new_identity_seed"], mesher)  # fmt: skip
        elif params["targets"] == "train":
            targets = training_people_faces(table, train_people)
        else:
            raise ValueError(f"targets {params['targets']!r}: expected 'new_synthpain' or 'train'")
        check_no_leakage([f.name for f in targets], test_people)
        cells = plan_cells(table, train_people, params["levels"], seeds,
                           params["pairs_per_cell"], len(targets), seed)  # fmt: skip
        bank = SyntheticBank(table, targets, params["pain_frames"], seed)
        engine = Transfer(model, steps=params["sampling_steps"],
                          identity_scale=params["identity_scale"],
                          reference_strength=params["reference_strength"])  # fmt: skip
        pairs = {pair for cell in cells for pair in cell.pairs}
        timing["generation_seconds"] = bank.build(engine, pairs, [a for a in arms if a != "real"])
        rows = table[table["detected"]]
        train_rows = rows[rows["subject"].isin(train_people)].reset_index(drop=True)
        test_rows = rows[rows["subject"].isin(test_people)]
        real_train, test = real_images(train_rows), real_images(test_rows)
        if "mesh" in detectors:
            mesh_start = time.perf_counter()
            for images in (real_train, test):
                images.features = mesh_features(images.crops, mesher)
            bank.add_features(mesher)
            timing["mesh_feature_seconds"] = time.perf_counter() - mesh_start
    fit_start = time.perf_counter()
    results = run_sweep(real_train, train_rows, test, bank.images, cells, train_people,
                        test_people, arms, detectors, params, workers)  # fmt: skip
    timing["fit_seconds"] = time.perf_counter() - fit_start
    timing["total_seconds"] = time.perf_counter() - start
    summary, tests = summarise(results), arm_tests(results)
    synthetic_detected = {
        method: float(np.mean([~np.isnan(i.features).any(1) for (m, _), i in bank.images.items()
                               if m == method])) if "mesh" in detectors else None
        for method in arms if method != "real"
    }  # fmt: skip
    config = {
        "n_train_people": len(train_people), "n_test_people": len(test_people),
        "n_test_images": len(test), "n_test_pain": int((test.pspi > 0).sum()),
        "n_pain_people_available": len(pain_people(table, train_people)),
        "seeds": seeds, "pairs_per_cell": params["pairs_per_cell"],
        "n_new_identities": len(targets), "targets": params["targets"],
        "synthetic_mesh_detection_rate": synthetic_detected, **timing,
    }  # fmt: skip
    return {
        "results": results, "summary": summary, "tests": tests, "cells": cells, "bank": bank,
        "targets": targets, "test": test,
        "mixed": {d: mixed_model(results, d) for d in detectors},
        "metrics": metrics_json(summary, tests, results, params["primary_detector"], config),
    }  # fmt: skip
