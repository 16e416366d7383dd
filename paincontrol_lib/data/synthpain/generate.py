"""Write the SynthPain dataset: images plus one table with every AU, PSPI, split and landmarks.

Deterministic: each identity is rendered from its own seeded generators, so the bytes do not
depend on the number of worker processes. The dataset is written to a temporary folder beside
the target and moved into place at the end, so an interrupted run never leaves a half dataset.
"""

from __future__ import annotations

import functools
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from paincontrol_lib.data.synthpain.expressions import SYNTHPAIN_AUS, sample_apex, sequence_frames
from paincontrol_lib.data.synthpain.identity import sample_identity
from paincontrol_lib.data.synthpain.render import default_renderer
from paincontrol_lib.facs import pspi
from paincontrol_lib.io import atomic_folder
from paincontrol_lib.seeds import stream

TABLE = "synthpain.parquet"
STAGE_ONLY_KEYS = ("evidence_people",)  # params.yaml: synthesize keys that are not the dataset's


@dataclass(frozen=True)
class SynthPainConfig:
    """Size and look of the dataset (``params.yaml: synthesize``)."""

    seed: int = 0
    n_identities: int = 60
    n_sequences: int = 3
    frames_per_sequence: int = 10
    image_size: int = 128
    face_fraction: float = 0.6
    supersample: int = 2
    pain_probability: float = 0.5
    test_fraction: float = 0.2
    val_fraction: float = 0.0  # people held out for choosing settings (sampler, thresholds)
    max_pose_jitter: float = 2.0  # degrees of head motion within a sequence
    appearance: bool = True  # AU furrows, wrinkles and bulges (False: geometry-only SynthPain)

    def __post_init__(self):
        if self.n_identities < 2:
            raise ValueError("n_identities must be >= 2 (train and test need different people)")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction={self.test_fraction} must lie strictly in (0, 1)")
        if not 0 <= self.val_fraction < 1 - self.test_fraction:
            raise ValueError(
                f"val_fraction={self.val_fraction} must lie in [0, 1 - test_fraction): "
                "some people must be left to train on"
            )
        if self.n_sequences < 1:
            raise ValueError("n_sequences must be >= 1")
        if self.supersample not in (1, 2, 3, 4):
            raise ValueError(f"supersample={self.supersample} must be 1, 2, 3 or 4")

    @classmethod
    def from_params(cls, synthesize: dict, seed: int) -> SynthPainConfig:
        """The dataset's configuration from ``params.yaml: synthesize`` (less the keys that
        size stage 00's measurements, not the dataset)."""
        return cls(seed=seed, **{k: v for k, v in synthesize.items() if k not in STAGE_ONLY_KEYS})

    @property
    def n_frames(self) -> int:
        return self.n_sequences * self.frames_per_sequence


def subject_splits(config: SynthPainConfig) -> dict[str, str]:
    """``train`` / ``val`` / ``test`` per identity, whole people at a time: one seeded
    permutation, its first ``test_fraction`` of people held out for the final numbers, the next
    ``val_fraction`` for every choice (at least one train and one test person)."""
    rng = stream("synthpain_test_people", config.seed)
    n = config.n_identities
    n_test = min(max(1, int(round(config.test_fraction * n))), n - 1)
    n_val = min(int(round(config.val_fraction * n)), n - 1 - n_test)
    order = rng.permutation(n)
    split = dict.fromkeys((f"S{i:03d}" for i in range(n)), "train")
    split.update({f"S{i:03d}": "test" for i in order[:n_test]})
    split.update({f"S{i:03d}": "val" for i in order[n_test : n_test + n_val]})
    return split


def test_subjects(config: SynthPainConfig) -> list[str]:
    """Identities held out for the final numbers."""
    return sorted(s for s, split in subject_splits(config).items() if split == "test")


def _render_identity(args) -> list[dict]:
    index, config, out_dir = args
    renderer = default_renderer(config.image_size, config.face_fraction, config.supersample,
                                config.appearance)  # fmt: skip
    identity = sample_identity(renderer.model, config.seed, index)
    rng = stream("synthpain_frames", config.seed, index)
    split = subject_splits(config)[identity.subject]
    rows = []
    subject_dir = Path(out_dir) / "images" / identity.subject
    subject_dir.mkdir(parents=True, exist_ok=True)
    phase = rng.uniform(0, 2 * np.pi, 3)
    for seq in range(config.n_sequences):
        kind, apex = sample_apex(rng, config.pain_probability)
        for frame, aus in enumerate(sequence_frames(apex, config.frames_per_sequence)):
            t = seq * config.frames_per_sequence + frame
            jitter = config.max_pose_jitter * np.sin(phase + 0.35 * t)
            result = renderer.render(identity, aus, pose_jitter=jitter, rng=rng)
            rel = f"images/{identity.subject}/q{seq}_f{frame:02d}.png"
            Image.fromarray(result.image).save(Path(out_dir) / rel, optimize=False)
            pose = identity.pose + jitter
            rows.append(
                {
                    "subject": identity.subject,
                    "sequence": f"{identity.subject}_q{seq}",
                    "frame": frame,
                    "kind": kind,
                    "image": rel,
                    "split": split,
                    "neutral_reference": bool(seq == 0 and frame == 0),
                    "yaw": float(pose[0]),
                    "pitch": float(pose[1]),
                    "roll": float(pose[2]),
                    **aus,
                    "PSPI": pspi(aus),
                    "landmarks_2d": result.landmarks_2d.astype(np.float32).ravel(),
                    "landmarks_3d": result.landmarks_3d.astype(np.float32).ravel(),
                }
            )
    return rows


def generate(
    config: SynthPainConfig, out_dir: str | Path, workers: int | None = None
) -> pd.DataFrame:
    """Render the dataset into ``out_dir`` (replaced atomically) and return its table."""
    workers = workers or min(os.cpu_count() or 1, 2)
    start = time.perf_counter()
    with atomic_folder(out_dir) as tmp:
        jobs = [(i, config, tmp) for i in range(config.n_identities)]
        if workers > 1:
            import multiprocessing

            # fork: workers inherit the loaded AU model and need no __main__ guard in scripts.
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            ctx = multiprocessing.get_context(method)
            with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                per_identity = list(pool.map(_render_identity, jobs))
        else:
            per_identity = [_render_identity(job) for job in jobs]
        table = pd.DataFrame([row for rows in per_identity for row in rows])
        table.to_parquet(tmp / TABLE, index=False)
        (tmp / "config.json").write_text(pd.Series(asdict(config)).to_json(indent=2) + "\n")
    # Kept out of the parquet file (pandas would store attrs there and break byte-determinism).
    table.attrs["generation_seconds"] = time.perf_counter() - start
    return table


def load_table(data_dir: str | Path) -> pd.DataFrame:
    """Read the SynthPain table; a missing dataset gets a message saying how to make it."""
    path = Path(data_dir) / TABLE
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: generate SynthPain first (`dvc repro synthesize` or "
            "`paincontrol synthesize --out data/synthpain`)."
        )
    return pd.read_parquet(path)


def landmarks(table: pd.DataFrame, kind: str = "2d") -> np.ndarray:
    """Stack the ground-truth landmark column into (n, 478, 2|3)."""
    dims = {"2d": 2, "3d": 3}[kind]
    return np.stack(table[f"landmarks_{kind}"].to_numpy()).reshape(len(table), -1, dims)


__all__ = [
    "SYNTHPAIN_AUS",
    "SynthPainConfig",
    "generate",
    "landmarks",
    "load_table",
    "subject_splits",
    "test_subjects",
]


def load_config(data_dir: str | Path) -> SynthPainConfig:
    """The configuration a SynthPain folder was generated with."""
    import json

    path = Path(data_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a SynthPain folder (no config.json)")
    raw = json.loads(path.read_text())
    raw.setdefault("appearance", False)  # folders from before the switch are geometry only
    fields = SynthPainConfig.__dataclass_fields__
    # config.json stores every number as a float (pandas); the integer fields go back to int.
    return SynthPainConfig(
        **{
            k: int(v) if fields[k].type == "int" else bool(v) if fields[k].type == "bool" else v
            for k, v in raw.items()
            if k in fields
        }  # fmt: skip
    )


def render_exact(config: SynthPainConfig, subject: str, aus: dict[str, float]):
    """The true image of ``subject`` wearing ``aus`` at the pose, framing and lighting of its
    neutral reference frame (the identity photo every method receives), without sensor noise:
    the exact answer of any transfer onto this person, drawn where the outputs are."""
    index = int(subject.lstrip("S"))
    if not 0 <= index < config.n_identities:
        raise ValueError(f"{subject} is not a person of this SynthPain dataset")
    renderer = _renderer(config.image_size, config.face_fraction, config.supersample,
                         config.appearance)  # fmt: skip
    identity = sample_identity(renderer.model, config.seed, index)
    return renderer.render(identity, aus, pose_jitter=reference_pose_jitter(config, index))


def exact_au_region(config: SynthPainConfig, subject: str, au: str, aus: dict[str, float]):
    """The pixels of :func:`render_exact`'s image whose skin ``au``'s appearance may change."""
    index = int(subject.lstrip("S"))
    renderer = _renderer(config.image_size, config.face_fraction, config.supersample,
                         config.appearance)  # fmt: skip
    identity = sample_identity(renderer.model, config.seed, index)
    return renderer.au_region(identity, au, aus, pose_jitter=reference_pose_jitter(config, index))


def reference_pose_jitter(config: SynthPainConfig, index: int) -> np.ndarray:
    """The head-pose jitter (degrees) of person ``index``'s reference frame (sequence 0, frame
    0 of :func:`_render_identity`, whose first draw is the phase): the identity photo's pose."""
    phase = stream("synthpain_frames", config.seed, index).uniform(0, 2 * np.pi, 3)
    return config.max_pose_jitter * np.sin(phase)


@functools.cache
def _renderer(size: int, face_fraction: float, supersample: int, appearance: bool):
    return default_renderer(size, face_fraction, supersample, appearance)
