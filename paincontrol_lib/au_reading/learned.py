"""The ``learned`` AU backend: FACS intensities read from an aligned face crop against the same
person's neutral crop, by a regression learned on training people.

Why this shape. The ``mesh`` backend explains a mesh's displacement from neutral with the
AU->mesh basis; but MediaPipe does not see a face the way that basis moves it, so five of the six
pain AUs came out below ICC 0.75. Here the *measured* response is learned instead: both crops
are meshed by MediaPipe exactly as every generated output is (upscaled to ``UPSCALE`` px, points
in unit crop coordinates), the neutral-referenced displacement of all 478 points (the
person-normalised feature of the pain-AU literature) is standardised, and a multi-output ridge
regression maps it to every AU the training data codes. Nothing here touches the synthesis
basis (``au_to_mesh`` / ``au_basis``); a test keeps it that way.

Robust to what generated images look like: besides each training crop, ``degraded_copies``
copies pass through :func:`degrade` (64 px like the generator's outputs, blur, colour shift,
grain) before meshing. The ridge penalty and the number of copies are chosen on validation
people; :func:`validation_table` reports test people, clean and degraded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from paincontrol_lib.data.records import AU_COLUMNS
from paincontrol_lib.facs import BINARY_AUS, PAIN_AUS, pspi
from paincontrol_lib.landmarks.image import UPSCALE, upscale
from paincontrol_lib.stats import cluster_bootstrap_statistic, icc_2_1, icc_3_1

GENERATED_SIZE = 64  # px of the generator's outputs, which degraded training crops imitate
CLEAN_SIZE = 128  # px of the clean aligned crops (the landmark stage's crop size)


def degrade(crop: np.ndarray, rng: np.random.Generator, size: int = GENERATED_SIZE) -> np.ndarray:
    """What a generated output does to a face: ``size`` px, Gaussian blur (sigma 0-1 px),
    per-channel gain 0.85-1.15 and offset +-0.05, Gaussian grain (sd 0-0.04); uint8 out."""
    from PIL import Image, ImageFilter

    image = Image.fromarray(crop).resize((size, size), Image.Resampling.BICUBIC)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.0)))
    values = np.asarray(image, float) / 255
    values = values * rng.uniform(0.85, 1.15, 3) + rng.uniform(-0.05, 0.05, 3)
    values = values + rng.normal(0, rng.uniform(0, 0.04), values.shape)
    return (np.clip(values, 0, 1) * 255 + 0.5).astype(np.uint8)


def read_meshes(crops, mesher=None) -> np.ndarray:
    """MediaPipe meshes (n, 478, 3) of aligned crops in unit crop coordinates, read as every
    output is (upscaled to ``UPSCALE`` px); NaN where no face was found."""
    from paincontrol_lib.landmarks.mesher import FaceMesher

    own = mesher is None
    mesher = FaceMesher() if own else mesher
    try:
        out = np.full((len(crops), 478, 3), np.nan)
        for i, crop in enumerate(crops):
            found = mesher(upscale(np.asarray(crop)))
            if found.detected:
                out[i] = found.landmarks / UPSCALE
        return out
    finally:
        if own:
            mesher.close()


def displacement(meshes: np.ndarray, neutrals: np.ndarray) -> np.ndarray:
    """Neutral-referenced features: (n, 478 * 3) displacement of each mesh from its neutral."""
    meshes, neutrals = np.asarray(meshes, float), np.asarray(neutrals, float)
    if meshes.shape != neutrals.shape or meshes.ndim != 3 or meshes.shape[1:] != (478, 3):
        raise ValueError(f"meshes {meshes.shape} and neutrals {neutrals.shape}: need (n,478,3)")
    return (meshes - neutrals).reshape(len(meshes), -1)


@dataclass
class LearnedAU:
    """Standardised displacement -> AU intensities (ridge); :meth:`fit`, :meth:`predict`,
    :meth:`save` / :meth:`load`. ``record`` says what it was trained on."""

    columns: tuple[str, ...]
    alpha: float
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (features, columns)
    intercept: np.ndarray
    record: dict = field(default_factory=dict)

    @classmethod
    def fit(cls, features: np.ndarray, targets: pd.DataFrame, alpha: float,
            record: dict | None = None) -> LearnedAU:  # fmt: skip
        """Ridge on standardised ``features`` (n, d) to the AU columns of ``targets`` that have
        ground truth (NaN rows of a column count as 0 there: not coded = absent)."""
        return cls.fit_path(features, targets, [alpha], record)[0]

    @classmethod
    def fit_path(cls, features: np.ndarray, targets: pd.DataFrame, alphas,
                 record: dict | None = None) -> list[LearnedAU]:  # fmt: skip
        """:meth:`fit` for every penalty in ``alphas`` from one eigendecomposition of the
        Gram matrix (as many fits for the price of one)."""
        columns = tuple(c for c in AU_COLUMNS if c in targets and targets[c].notna().any())
        if not columns:
            raise ValueError("no AU ground truth to learn from (no AU column has a value)")
        keep = np.isfinite(features).all(1)
        if keep.sum() < 2:
            raise ValueError(f"only {int(keep.sum())} training rows have a face")
        x = np.asarray(features, float)[keep]
        y = np.nan_to_num(targets[list(columns)].to_numpy(float)[keep])
        mean, scale = x.mean(0), x.std(0)
        scale[scale < 1e-12] = 1.0
        z = (x - mean) / scale
        y_mean = y.mean(0)
        eigenvalues, vectors = np.linalg.eigh(z.T @ z)
        projected = vectors.T @ (z.T @ (y - y_mean))
        return [
            cls(
                columns,
                float(alpha),
                mean,
                scale,
                vectors @ (projected / (np.maximum(eigenvalues, 0) + alpha)[:, None]),
                y_mean,
                dict(record or {}),
            )  # fmt: skip
            for alpha in alphas
        ]

    def predict(self, features: np.ndarray) -> pd.DataFrame:
        """AU table (``AU_COLUMNS`` + PSPI) on the FACS scale (0-5, AU43 0-1); AUs it was not
        trained on and rows without a face are NaN."""
        features = np.asarray(features, float)
        if features.ndim != 2 or features.shape[1] != len(self.mean):
            raise ValueError(f"features {features.shape}: this model reads {len(self.mean)}")
        raw = ((features - self.mean) / self.scale) @ self.coef + self.intercept
        values = np.full((len(features), len(AU_COLUMNS)), np.nan)
        for j, au in enumerate(self.columns):
            values[:, AU_COLUMNS.index(au)] = np.clip(raw[:, j], 0, 1 if au in BINARY_AUS else 5)
        table = pd.DataFrame(values, columns=list(AU_COLUMNS))
        table["PSPI"] = pspi(table[[a for a in PAIN_AUS]])
        table.loc[~np.isfinite(features).all(1), :] = np.nan
        return table

    def read(self, meshes: np.ndarray, neutrals: np.ndarray) -> pd.DataFrame:
        """AU table of meshes (n, 478, 3) against their neutral meshes, unit crop coordinates."""
        return self.predict(displacement(meshes, neutrals))

    def reads(self, faces: Faces) -> pd.DataFrame:
        """:meth:`read` of :class:`Faces` (the interface every backend shares)."""
        return self.read(faces.meshes, faces.neutrals)

    def save(self, path) -> Path:
        """One ``.npz`` (arrays + JSON record), written atomically."""
        import io
        import json

        from paincontrol_lib.io import atomic_write_bytes

        buffer = io.BytesIO()
        meta = {"columns": list(self.columns), "alpha": self.alpha, "record": self.record}
        np.savez(buffer, mean=self.mean, scale=self.scale, coef=self.coef,
                 intercept=self.intercept, meta=np.array(json.dumps(meta)))  # fmt: skip
        return atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path) -> LearnedAU:
        import json

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no learned AU estimator (stage 04 trains it)")
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {k: data[k] for k in ("mean", "scale", "coef", "intercept")}
        return cls(tuple(meta["columns"]), meta["alpha"], record=meta["record"], **arrays)


def agreement(truth: pd.DataFrame, estimate: pd.DataFrame, aus=(*PAIN_AUS, "PSPI"),
              groups=None, n_boot: int = 1000, seed: int = 0) -> dict:  # fmt: skip
    """Per AU over rows where both are known: MAE; ``icc_a1``, ICC(2,1) (absolute agreement: a
    reader's bias counts against it) and ``icc_c1``, ICC(3,1) (consistency, blind to bias), each
    with a 95 % interval from a bootstrap over ``groups`` (the people: frames of one person are
    not independent evidence; None resamples rows; ``n_boot`` 0: no intervals); F1 at presence
    (truth >= 1; estimate >= 0.5, i.e. rounds to >= 1)."""
    labels = np.arange(len(truth)) if groups is None else np.asarray(groups)
    out = {}
    for au in aus:
        a, b = truth[au].to_numpy(float), estimate[au].to_numpy(float)
        ok = np.isfinite(a) & np.isfinite(b)
        a, b, people = a[ok], b[ok], labels[ok]
        entry = {"mae": float(np.abs(a - b).mean()) if len(a) else None}
        for key, icc in (("icc_a1", icc_2_1), ("icc_c1", icc_3_1)):
            if n_boot:
                value, low, high = cluster_bootstrap_statistic(icc, people, a, b, n_boot=n_boot,
                                                               seed=seed)  # fmt: skip
            else:
                value, low, high = icc(a, b), np.nan, np.nan
            entry |= {key: value, f"{key}_ci_low": low, f"{key}_ci_high": high}
        present, called = a >= 1, b >= 0.5
        hits = float((present & called).sum())
        f1 = 2 * hits / (present.sum() + called.sum()) if present.sum() + called.sum() else None
        entry |= {"f1": None if au == "PSPI" or f1 is None else float(f1), "n": int(ok.sum()),
                  "n_people": int(len(np.unique(people)))}  # fmt: skip
        out[au] = {k: None if isinstance(v, float) and not np.isfinite(v) else v
                   for k, v in entry.items()}  # fmt: skip
    return out


@dataclass
class Faces:
    """What any AU reader may look at for n faces: MediaPipe meshes (unit crop coordinates) of
    each aligned crop and of the person's neutral crop, and the crops themselves (uint8)."""

    meshes: np.ndarray  # (n, 478, 3), NaN where no face was found
    neutrals: np.ndarray  # (n, 478, 3)
    crops: np.ndarray  # (n, h, w, 3)
    neutral_crops: np.ndarray  # (n, h, w, 3)

    def __len__(self) -> int:
        return len(self.meshes)

    def subset(self, mask) -> Faces:
        return Faces(self.meshes[mask], self.neutrals[mask], self.crops[mask],
                     self.neutral_crops[mask])  # fmt: skip

    @staticmethod
    def concat(parts) -> Faces:
        return Faces(*(np.concatenate([getattr(p, f) for p in parts])
                       for f in ("meshes", "neutrals", "crops", "neutral_crops")))  # fmt: skip


@dataclass
class KnownFaces:
    """Faces with their true AUs (``rows``: subject and AU columns), clean and degraded (the
    generator's look): what a reader is validated on."""

    rows: pd.DataFrame
    clean: Faces
    degraded: Faces

    @staticmethod
    def concat(parts) -> KnownFaces:
        return KnownFaces(pd.concat([p.rows for p in parts], ignore_index=True),
                          Faces.concat([p.clean for p in parts]),
                          Faces.concat([p.degraded for p in parts]))  # fmt: skip


def score_known(known: KnownFaces, read, n_boot: int = 1000, seed: int = 0) -> dict:
    """Agreement with the truth (:func:`agreement`, intervals over people) of any reader
    ``read(faces) -> AU table``: ``{"clean": ..., "degraded": ...}``."""
    groups = known.rows["subject"].to_numpy()
    return {name: agreement(known.rows, read(faces).reset_index(drop=True), groups=groups,
                            n_boot=n_boot, seed=seed)
            for name, faces in (("clean", known.clean), ("degraded", known.degraded))}  # fmt: skip


@dataclass
class TableReads:
    """Every detected landmark-table row read the estimators' way: clean (``CLEAN_SIZE`` crop)
    and ``len(degraded)`` degraded copies (``GENERATED_SIZE``), each beside the person's neutral
    crop (undegraded: a generated output's reference is the target's identity photo), as
    meshes and as pixels."""

    rows: pd.DataFrame  # subject, split and AU columns, one row per image
    clean: np.ndarray
    clean_neutral: np.ndarray
    degraded: list[np.ndarray]
    degraded_neutral: np.ndarray
    crops: np.ndarray  # (n, GENERATED_SIZE, GENERATED_SIZE, 3): the clean crops, resized
    degraded_crops: list[np.ndarray]  # of (n, GENERATED_SIZE, GENERATED_SIZE, 3)
    neutral_crops: np.ndarray  # (n, GENERATED_SIZE, GENERATED_SIZE, 3): each row's person

    def meshes(self, copy: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(meshes, neutrals): clean (``copy`` None) or of degraded copy ``copy``."""
        if copy is None:
            return self.clean, self.clean_neutral
        return self.degraded[copy], self.degraded_neutral

    def features(self, copy: int | None = None) -> np.ndarray:
        """Neutral-referenced features, clean or of degraded copy ``copy``."""
        return displacement(*self.meshes(copy))

    def faces(self, copy: int | None = None) -> Faces:
        """Meshes and crops, clean (``copy`` None) or of degraded copy ``copy``."""
        crops = self.crops if copy is None else self.degraded_crops[copy]
        return Faces(*self.meshes(copy), crops, self.neutral_crops)

    def known(self, mask: np.ndarray) -> KnownFaces:
        """The rows in ``mask``, clean and as the last degraded copy (which no reader trains
        on)."""
        return KnownFaces(self.rows.reset_index(drop=True)[mask].reset_index(drop=True),
                          self.faces().subset(mask),
                          self.faces(len(self.degraded) - 1).subset(mask))  # fmt: skip


def read_meshes_parallel(crops, workers: int = 1) -> np.ndarray:
    """:func:`read_meshes` in ``workers`` spawned processes (MediaPipe is single-threaded here);
    the same meshes in the same order whatever ``workers`` is."""
    if workers <= 1 or len(crops) < 2 * workers:
        return read_meshes(crops)
    from paincontrol_lib.parallel import process_pool

    chunks = np.array_split(np.arange(len(crops)), workers)
    with process_pool(workers) as pool:
        parts = pool.map(read_meshes, [[crops[i] for i in chunk] for chunk in chunks])
        return np.concatenate(list(parts))


def read_table(table: pd.DataFrame, seed: int, copies: int, workers: int = 1) -> TableReads:
    """Crop, degrade (``seeds.stream("au_degradation", seed, copy)``) and mesh (in ``workers``
    processes) every detected row of a landmark table that has a detected neutral frame."""
    from paincontrol_lib.landmarks.align import aligned_crop
    from paincontrol_lib.landmarks.image import load_image
    from paincontrol_lib.landmarks.table import row_transform
    from paincontrol_lib.seeds import stream

    table = table[table["detected"]]
    neutral = table[table["neutral_reference"]].drop_duplicates("subject").set_index("subject")
    if neutral.empty:
        raise ValueError("no detected neutral reference frames: the estimator needs one a person")
    table = table[table["subject"].isin(neutral.index)].reset_index(drop=True)
    crops = [aligned_crop(load_image(r["image"]), row_transform(r), CLEAN_SIZE)
             for _, r in table.iterrows()]  # fmt: skip
    people = list(neutral.index)
    neutral_crops = {
        s: aligned_crop(load_image(row["image"]), row_transform(row), CLEAN_SIZE)
        for s, row in neutral.iterrows()
    }
    small = [np.asarray(upscale(neutral_crops[s], GENERATED_SIZE)) for s in people]
    degraded_crops = []
    for copy in range(copies):
        rng = stream("au_degradation", seed, copy)
        degraded_crops += [degrade(c, rng) for c in crops]
    everything = [*crops, *(neutral_crops[s] for s in people), *small, *degraded_crops]
    meshes = read_meshes_parallel(everything, workers)
    n, k = len(crops), len(people)
    clean = meshes[:n]
    neutral_clean = dict(zip(people, meshes[n : n + k], strict=True))
    neutral_small = dict(zip(people, meshes[n + k : n + 2 * k], strict=True))
    degraded = [meshes[n + 2 * k + c * n : n + 2 * k + (c + 1) * n] for c in range(copies)]
    subjects = table["subject"].tolist()
    keep = ["subject", "split", "image", *[c for c in AU_COLUMNS if c in table], "PSPI"]
    small_crops = dict(zip(people, small, strict=True))
    return TableReads(
        table[[c for c in keep if c in table]],
        clean,
        np.stack([neutral_clean[s] for s in subjects]),
        degraded,
        np.stack([neutral_small[s] for s in subjects]),
        np.stack([upscale(c, GENERATED_SIZE) for c in crops]),
        [np.stack(degraded_crops[c * n : (c + 1) * n]) for c in range(copies)],
        np.stack([small_crops[s] for s in subjects]),
    )


def _mean_pain_icc(report: dict) -> float:
    values = [report[a]["icc_a1"] for a in PAIN_AUS if report[a]["icc_a1"] is not None]
    return float(np.mean(values)) if values else -np.inf


def fit_on_split(reads: TableReads, alphas, copies: int, split: str = "train") -> list[LearnedAU]:
    """The estimators (one per penalty in ``alphas``) trained on ``split``'s rows: clean plus
    the first ``copies`` degraded."""
    rows = (reads.rows["split"] == split).to_numpy()
    if not rows.any():
        raise ValueError(f"no {split!r} people to train the AU estimator on")
    features = [reads.features()[rows], *(reads.features(c)[rows] for c in range(copies))]
    targets = pd.concat([reads.rows[rows]] * (1 + copies), ignore_index=True)
    record = {
        "trained_on": split,
        "people": sorted(set(reads.rows.loc[rows, "subject"])),
        "n_images": int(rows.sum()),
        "degraded_copies": copies,
    }
    return LearnedAU.fit_path(np.vstack(features), targets, alphas, record)


def check_splits(reads: TableReads) -> None:
    split = reads.rows["split"].to_numpy()
    for name in ("val", "test"):
        if not (split == name).any():
            raise ValueError(f"no {name!r} people: the estimator is chosen on val, tested on test")


def select_and_validate(reads: TableReads, alphas, copies_grid, n_boot: int = 1000,
                        seed: int = 0) -> tuple[LearnedAU, dict]:  # fmt: skip
    """Choose the ridge penalty and degraded copies on ``val`` people (mean pain-AU ICC(2,1) over
    clean and degraded crops) and report ``test`` people, clean and degraded (the last degraded
    copy, never a training copy), with intervals over people. Returns the chosen estimator and
    its report; ``report["val"]`` holds its validation scores."""
    check_splits(reads)
    split = reads.rows["split"].to_numpy()
    grid = []
    for copies in [c for c in copies_grid if c < len(reads.degraded)]:
        for alpha, model in zip(alphas, fit_on_split(reads, alphas, copies), strict=True):
            on_val = score_backend(reads, model.reads, split == "val", n_boot=0)
            score = (_mean_pain_icc(on_val["clean"]) + _mean_pain_icc(on_val["degraded"])) / 2
            grid.append({"alpha": float(alpha), "degraded_copies": int(copies),
                         "val_mean_pain_icc_a1": score, "model": model, "val": on_val})  # fmt: skip
    if not grid:
        raise ValueError(f"no setting to try: alphas {list(alphas)}, copies {list(copies_grid)} "
                         f"(need fewer than {len(reads.degraded)} copies)")  # fmt: skip
    best = max(grid, key=lambda g: g["val_mean_pain_icc_a1"])
    model = best["model"]
    report = {
        **score_backend(reads, model.reads, split == "test", n_boot, seed),
        "val": best["val"],
        "n_train_people": len(model.record["people"]),
        "selection": {
            "rule": "max mean pain-AU ICC(2,1) on val people, clean and degraded averaged",
            "chosen": {"alpha": best["alpha"], "degraded_copies": best["degraded_copies"]},
            "grid": [
                {k: g[k] for k in ("alpha", "degraded_copies", "val_mean_pain_icc_a1")}
                for g in grid
            ],  # fmt: skip
        },
        "features": "MediaPipe mesh of the aligned crop minus that of the person's neutral crop "
        "(478 x 3), standardised; multi-output ridge",
    }
    return model, report


def score_backend(reads: TableReads, read, mask: np.ndarray, n_boot: int = 1000,
                  seed: int = 0) -> dict:  # fmt: skip
    """:func:`score_known` of a reader on the table rows in ``mask``."""
    return score_known(reads.known(mask), read, n_boot, seed)
