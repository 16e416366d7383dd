"""Training and evaluation examples from the landmark table.

Each example is a target face (aligned crop at the model's resolution), the control image of
*its* aligned mesh, the prompt made from its AUs, and an identity embedding taken from a
*different* image of the same person (the neutral reference or another frame), so the model
must carry identity from a reference onto a new expression: exactly what transfer asks of it.
Everything is prepared once and held in memory: faces and control images as uint8, read as
float a batch at a time (:class:`Frames`), so a real dataset at 512 px fits (docs/real-data.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from paincontrol_lib import facemesh
from paincontrol_lib.data.records import AU_COLUMNS
from paincontrol_lib.landmarks.align import aligned_crop
from paincontrol_lib.landmarks.control import render_control
from paincontrol_lib.landmarks.image import load_image
from paincontrol_lib.landmarks.table import row_transform
from paincontrol_lib.model.text import aus_of, prompt_from_aus
from paincontrol_lib.seeds import stream

# Where AU4 and AU43 live (and the mouth): the loss counts these pixels more.
REGION_POINTS = (
    facemesh.RIGHT_BROW_UPPER + facemesh.RIGHT_BROW_LOWER + facemesh.LEFT_BROW_UPPER
    + facemesh.LEFT_BROW_LOWER
    + tuple(int(i) for pair in facemesh.RIGHT_EYE_PAIRS + facemesh.LEFT_EYE_PAIRS for i in pair)
    + tuple(int(i) for pair in facemesh.INNER_LIP_PAIRS for i in pair)
)  # fmt: skip


def region_mask(aligned: np.ndarray, size: int, sigma: float = 0.025) -> np.ndarray:
    """Soft mask (size x size, 0-1) around brows, eyelids and lips of an aligned mesh."""
    pts = aligned[list(REGION_POINTS), :2]
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    d2 = ((xx[..., None] - pts[:, 0]) ** 2 + (yy[..., None] - pts[:, 1]) ** 2).min(-1)
    return np.exp(-0.5 * d2 / sigma**2).astype(np.float32)


# The float each uint8 level is read as, made by the float32 ops that once converted every
# example eagerly (``x / 127.5 - 1``, ``x / 255``): batches read from uint8 are bit-identical.
IMAGE_LEVELS = torch.arange(256, dtype=torch.float32) / 127.5 - 1
CONTROL_LEVELS = torch.arange(256, dtype=torch.float32) / 255


class Frames:
    """(n, 3, H, W) uint8 frames held as they are and read as float by rows: ``frames[rows]``
    is ``levels`` looked up per pixel. A quarter of float32's memory (UNBC's training people at
    512 px: about 200 GB as float32), and the same floats on any device."""

    def __init__(self, pixels: torch.Tensor, levels: torch.Tensor):
        if pixels.dtype != torch.uint8 or pixels.ndim != 4:
            raise ValueError(f"frames: expected (n, 3, H, W) uint8, got {pixels.dtype} "
                             f"{tuple(pixels.shape)}")  # fmt: skip
        self.pixels, self.levels = pixels, levels

    def __getitem__(self, rows) -> torch.Tensor:
        return self.levels.to(self.pixels.device)[self.pixels[rows].long()]

    def __len__(self) -> int:
        return len(self.pixels)

    @property
    def shape(self) -> torch.Size:
        return self.pixels.shape

    def to(self, device) -> Frames:
        return Frames(self.pixels.to(device), self.levels)


@dataclass
class Examples:
    """Prepared examples (in memory) and their table rows."""

    table: pd.DataFrame
    images: Frames  # (n, 3, H, W) read in [-1, 1]
    controls: Frames  # (n, 3, H, W) read in [0, 1]
    masks: torch.Tensor  # (n, 1, H, W) region masks, float32
    prompts: list[str]
    references: dict[str, np.ndarray]  # subject -> (k, d) embeddings of its reference images
    reference_keys: dict[str, list[str]]  # subject -> keys of those images

    def __len__(self) -> int:
        return len(self.table)


def prepare_examples(
    table: pd.DataFrame,
    embeddings: dict[str, np.ndarray],
    resolution: int,
) -> Examples:
    """Crop, draw and caption every detected row of ``table`` whose subject has references.

    ``embeddings`` maps a landmark-table ``key`` to its identity embedding; the keys present
    form each subject's reference pool.
    """
    table = table[table["detected"]].reset_index(drop=True)
    refs: dict[str, list[str]] = {}
    # Neutral references first: ``references[subject][0]`` is the person's neutral frame.
    ordered = table.sort_values("neutral_reference", ascending=False, kind="stable")
    for key, subject in zip(ordered["key"], ordered["subject"], strict=True):
        if key in embeddings:
            refs.setdefault(subject, []).append(key)
    table = table[table["subject"].isin(refs)].reset_index(drop=True)
    if table.empty:
        raise ValueError("no detected faces with identity references to train or evaluate on")

    def rendered():
        for row in table.itertuples(index=False):
            aligned = np.asarray(row.aligned, dtype=np.float64).reshape(-1, 3)
            crop = aligned_crop(load_image(row.image), row_transform(row), resolution)
            control = render_control(aligned * resolution, resolution)
            yield crop, control, region_mask(aligned, resolution)

    images, controls, masks = store_frames(rendered(), len(table), resolution)
    return Examples(
        table=table,
        images=images,
        controls=controls,
        masks=masks,
        prompts=[
            prompt_from_aus(aus_of(row._asdict(), AU_COLUMNS))
            for row in table.itertuples(index=False)
        ],
        references={s: np.stack([embeddings[k] for k in keys]) for s, keys in refs.items()},
        reference_keys=refs,
    )


def store_frames(
    rendered: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], n: int, size: int
) -> tuple[Frames, Frames, torch.Tensor]:
    """``(images, controls, masks)`` of ``n`` rendered ``(crop, control, mask)``: crops and control
    images (size, size, 3) uint8, masks (size, size) float32. Each is written into storage
    allocated once, so the peak is the set itself, not a list of frames beside its stack."""
    images = torch.empty((n, 3, size, size), dtype=torch.uint8)
    controls = torch.empty_like(images)
    masks = torch.empty((n, 1, size, size), dtype=torch.float32)
    stored = 0
    for i, (crop, control, mask) in enumerate(rendered):
        if crop.dtype != np.uint8 or control.dtype != np.uint8:
            raise ValueError(f"frame {i}: crop {crop.dtype}, control {control.dtype}: need uint8")
        images.numpy()[i] = np.moveaxis(crop, -1, 0)
        controls.numpy()[i] = np.moveaxis(control, -1, 0)
        masks.numpy()[i, 0] = mask
        stored = i + 1
    if stored != n:
        raise ValueError(f"{stored} frames rendered, {n} expected")
    return Frames(images, IMAGE_LEVELS), Frames(controls, CONTROL_LEVELS), masks


def reference_rows(table: pd.DataFrame, per_subject: int, seed: int) -> pd.DataFrame:
    """Per subject: its neutral reference plus ``per_subject - 1`` other frames (seeded)."""
    rng = stream("identity_photos", seed)
    chosen = []
    detected = table[table["detected"]]
    for _, rows in detected.groupby("subject", sort=True):
        neutral = rows[rows["neutral_reference"]]
        others = rows.drop(neutral.index)
        k = min(max(per_subject - len(neutral), 0), len(others))
        chosen.append(pd.concat([neutral, others.iloc[rng.permutation(len(others))[:k]]]))
    return pd.concat(chosen) if chosen else detected.head(0)


def identity_embeddings(
    rows: pd.DataFrame, backend: str = "dlib", cache_dir: str | Path | None = None
) -> dict[str, np.ndarray]:
    """Embeddings of ``rows``' images (by landmark-table key), from their MediaPipe meshes."""
    from paincontrol_lib.identity import EmbeddingCache, make_identity

    model = make_identity(backend)
    cache = EmbeddingCache(cache_dir, model) if cache_dir else None
    out = {}
    for row in rows.itertuples(index=False):
        points = np.asarray(row.landmarks, dtype=np.float64).reshape(-1, 3)
        image = load_image(row.image)
        if cache is not None:
            out[row.key] = cache.get_or_compute(row.image, image, points)
        else:
            out[row.key] = model.embed(image, points)
    if cache is not None:
        cache.save()
    return out


def save_examples(examples: Examples, path: str | Path, quality: int = 95) -> Path:
    """Write prepared examples to one compressed ``.npz`` (faces as JPEG, controls and masks as
    compressed uint8), so training can run where MediaPipe and dlib are not installed (a GPU
    machine) and the file stays small enough to travel (~4.5 KB per 64 px example)."""
    import io
    import json

    from PIL import Image

    from paincontrol_lib.io import atomic_write_bytes

    jpegs = []
    for pixels in examples.images.pixels.permute(0, 2, 3, 1).numpy():
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "JPEG", quality=quality, subsampling=0)
        jpegs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
    subjects = sorted(examples.references)
    meta = {
        "table": examples.table[["key", "subject", "split"]].to_dict(orient="list"),
        "prompts": examples.prompts,
        "subjects": subjects,
        "reference_keys": [examples.reference_keys[s] for s in subjects],
    }
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        jpeg=np.concatenate(jpegs),
        jpeg_offsets=np.cumsum([0] + [len(j) for j in jpegs]),
        controls=examples.controls.pixels.numpy(),
        masks=(examples.masks * 255).round().to(torch.uint8).numpy(),
        references=np.concatenate([examples.references[s] for s in subjects]).astype(np.float32),
        meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
    )
    return atomic_write_bytes(path, buf.getvalue())


def load_examples(path: str | Path, split: str | None = None) -> Examples:
    """Examples written by :func:`save_examples` (optionally one split of them)."""
    import io
    import json

    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no packed examples (see paincontrol_lib.model.pretrain)")
    with np.load(path) as pack:
        meta = json.loads(pack["meta"].tobytes())
        jpeg, offsets = pack["jpeg"], pack["jpeg_offsets"]
        controls, masks, refs = pack["controls"], pack["masks"], pack["references"]
    table = pd.DataFrame(meta["table"])
    keep = np.flatnonzero(table["split"] == split) if split else np.arange(len(table))
    if len(keep) == 0:
        raise ValueError(f"no {split!r} examples in {path}")
    images = [
        np.asarray(Image.open(io.BytesIO(jpeg[offsets[i] : offsets[i + 1]].tobytes())))
        for i in keep
    ]
    references, reference_keys, start = {}, {}, 0
    for subject, keys in zip(meta["subjects"], meta["reference_keys"], strict=True):
        references[subject] = refs[start : start + len(keys)]
        reference_keys[subject] = keys
        start += len(keys)
    table = table.iloc[keep].reset_index(drop=True)
    wanted = set(table["subject"])
    return Examples(
        table=table,
        images=Frames(
            torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), IMAGE_LEVELS
        ),
        controls=Frames(torch.from_numpy(controls[keep]), CONTROL_LEVELS),
        masks=torch.from_numpy(masks[keep]).float() / 255,
        prompts=[meta["prompts"][i] for i in keep],
        references={s: r for s, r in references.items() if s in wanted},
        reference_keys={s: k for s, k in reference_keys.items() if s in wanted},
    )
