"""Detector inputs (:class:`Images`): real crops, classic augmentation, new identities, the
synthetic bank shared by every cell, and MediaPipe mesh features."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from paincontrol_lib.augment.cells import SubjectLeakageError, pair_frames, seeded_rng, text_code
from paincontrol_lib.landmarks.align import align, aligned_crop
from paincontrol_lib.landmarks.image import load_image
from paincontrol_lib.landmarks.table import row_transform

CROP = 64  # px of every image the detectors see
MESH_UPSCALE = 128  # crops are upscaled this far before MediaPipe meshes them
N_FEATURES = 468 * 2  # canonical (x, y) of MediaPipe's mesh points, irises left out


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
    from paincontrol_lib.landmarks.face import read_face

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
    from paincontrol_lib.landmarks.face import face_of

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
                      np.zeros((0, N_FEATURES)))  # fmt: skip

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
    from paincontrol_lib.landmarks.image import upscale

    out = np.full((len(crops), N_FEATURES), np.nan)
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
        rng = seeded_rng(self.seed, text_code(pair[0]), pair[1])
        crops = np.stack([classic_augment(crop_of(r), rng) for _, r in rows.iterrows()])
        return self._images(rows, crops, rows["subject"])

    def _retargeted(self, pair, size: int) -> list:
        """The pair's source frames retargeted (``delta``) onto its new identity; computed once
        and shared by the methods."""
        from paincontrol_lib.landmarks.table import mesh_of, neutral_row
        from paincontrol_lib.retarget import retarget

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
            from paincontrol_lib.landmarks.image import upscale

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
