"""Batches of image files meshed in worker processes, and the landmark stage's table built
from them: records in, landmark table + control images out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paincontrol_lib.landmarks.align import Similarity, align
from paincontrol_lib.landmarks.control import render_control
from paincontrol_lib.landmarks.image import load_image
from paincontrol_lib.landmarks.mesher import FaceMesher
from paincontrol_lib.landmarks.table import LANDMARK_TABLE

MIN_IMAGE_SIDE = 32  # smaller images cannot hold a face MediaPipe can mesh
MAX_IMAGE_SIDE = 2048  # larger images are meshed on a downscaled copy, landmarks scaled back


@dataclass(frozen=True)
class ImageResult:
    """Landmarks of one image file, or the reason there are none."""

    path: str
    detected: bool
    landmarks: np.ndarray | None  # (478, 3) pixels of the original image
    score: float
    width: int
    height: int
    error: str | None = None  # unreadable file, too small, no face found
    aligned: np.ndarray | None = None  # (478, 3) canonical frame (unit square)
    transform: Similarity | None = None  # image -> canonical


def mesh_image(mesher: FaceMesher, path, image: np.ndarray | None = None) -> ImageResult:
    """Check and mesh one image (read from ``path`` unless given); failures come back as
    ``error``, never raised."""
    if image is None:
        try:
            image = load_image(path)
        except (ValueError, FileNotFoundError) as exc:
            return ImageResult(str(path), False, None, float("nan"), 0, 0, error=str(exc))
    h, w = image.shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE:
        error = f"image too small ({w}x{h} px, need >= {MIN_IMAGE_SIDE})"
        return ImageResult(str(path), False, None, float("nan"), w, h, error=error)
    factor = 1.0
    if max(h, w) > MAX_IMAGE_SIDE:
        from PIL import Image

        factor = MAX_IMAGE_SIDE / max(h, w)
        small = Image.fromarray(image).resize((round(w * factor), round(h * factor)))
        image = np.asarray(small)
    face = mesher(image)
    if not face.detected:
        return ImageResult(str(path), False, None, face.score, w, h, error="no face found")
    landmarks = face.landmarks / factor
    aligned, transform = align(landmarks)
    return ImageResult(str(path), True, landmarks, face.score, w, h, None, aligned, transform)


_WORKER: dict = {}


def _init_worker(crop_size: int | None, out_dir: str | None) -> None:
    _WORKER.update(mesher=FaceMesher(), crop_size=crop_size, out_dir=out_dir, made_dirs=set())


def _work(job: tuple[str, str | None]) -> ImageResult:
    path, key = job
    try:
        image = load_image(path)
    except (ValueError, FileNotFoundError) as exc:
        return ImageResult(str(path), False, None, float("nan"), 0, 0, error=str(exc))
    result = mesh_image(_WORKER["mesher"], path, image)
    out_dir, size = _WORKER["out_dir"], _WORKER["crop_size"]
    if result.detected and out_dir and key:
        from PIL import Image

        target = Path(out_dir) / "control" / f"{key}.png"
        if target.parent not in _WORKER["made_dirs"]:
            target.parent.mkdir(parents=True, exist_ok=True)
            _WORKER["made_dirs"].add(target.parent)
        Image.fromarray(render_control(result.aligned * size, size)).save(target, compress_level=1)
    return result


def _ready(_):
    return True


def run_batch(
    paths,
    keys=None,
    out_dir: str | Path | None = None,
    crop_size: int = 128,
    workers: int = 2,
    progress: bool = True,
    desc: str = "landmarks",
) -> tuple[list[ImageResult], float]:
    """Mesh every file in ``workers`` processes; results in input order, and the seconds the
    images took once the workers were ready (like ``raw_mediapipe_rate``, which also excludes
    building the graph). Bad files are reported in ``ImageResult.error``, never raised. With
    ``out_dir`` and ``keys``, also write the control image of the aligned mesh to
    ``<out_dir>/control/<key>.png`` (the aligned face crop itself is cheap to make on the fly
    from the image and the stored transform: ``aligned_crop``)."""
    import time

    from tqdm import tqdm

    paths = [str(p) for p in paths]
    keys = list(keys) if keys is not None else [None] * len(paths)
    jobs = list(zip(paths, keys, strict=True))
    init = (crop_size, str(out_dir) if out_dir else None)
    # disable=None: a bar on a terminal, none in a notebook kernel (stderr is no TTY there), so
    # the executed notebooks readers open carry no progress bars.
    bar = dict(total=len(jobs), desc=desc, disable=None if progress else True, mininterval=2.0)
    if workers <= 1 or len(jobs) < 4 * workers:
        _init_worker(*init)
        try:
            start = time.perf_counter()
            results = [_work(job) for job in tqdm(jobs, **bar)]
            return results, time.perf_counter() - start
        finally:
            _WORKER.pop("mesher").close()
    from paincontrol_lib.parallel import process_pool

    with process_pool(workers, initializer=_init_worker, initargs=init) as pool:
        list(pool.map(_ready, range(workers)))
        start = time.perf_counter()
        results = list(tqdm(pool.map(_work, jobs, chunksize=16), **bar))
        return results, time.perf_counter() - start


def process_files(paths, keys=None, out_dir=None, crop_size=128, workers=2, progress=True):
    """``run_batch`` without the timing."""
    return run_batch(paths, keys, out_dir, crop_size, workers, progress)[0]


def detect_files(paths, workers: int = 2, progress: bool = True) -> list[ImageResult]:
    """Mesh every file (no outputs written)."""
    return process_files(paths, workers=workers, progress=progress)


def raw_mediapipe_rate(paths, repeats: int = 1) -> float:
    """Images per second of plain MediaPipe FaceMesh (read file + ``process``), one process."""
    import time

    from mediapipe.python.solutions import face_mesh
    from PIL import Image

    paths = [str(p) for p in paths]
    with face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True) as mesh:
        mesh.process(np.asarray(Image.open(paths[0]).convert("RGB")))  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            for p in paths:
                mesh.process(np.asarray(Image.open(p).convert("RGB")))
        return repeats * len(paths) / (time.perf_counter() - start)


def record_keys(records, root: str | Path) -> list[str]:
    """A unique, readable file key per record: its image path under ``root``, no suffix."""
    root = Path(root).resolve()
    keys = []
    for i, image in enumerate(records["image"]):
        path = Path(image).resolve()
        try:
            keys.append(path.relative_to(root).with_suffix("").as_posix())
        except ValueError:
            keys.append(f"external/{i:06d}_{path.stem}")
    if len(set(keys)) != len(keys):
        raise ValueError("two records share an image file: keys must be unique")
    return keys


def build_landmark_table(
    records,
    root: str | Path,
    out_dir: str | Path,
    crop_size: int = 128,
    workers: int = 2,
    progress: bool = True,
):
    """Mesh every record's image; write ``out_dir`` (replaced atomically) with
    ``landmarks.parquet`` and ``control/``. Returns ``(table, seconds)``.

    The file stores image paths relative to the data root and the data root relative to
    ``out_dir`` (``data_root``), so :func:`~paincontrol_lib.landmarks.table.load_landmark_table`
    finds the images from any working directory."""
    import os

    from paincontrol_lib.io import atomic_folder

    with atomic_folder(out_dir) as tmp:
        keys = record_keys(records, root)
        results, seconds = run_batch(records["image"], keys, tmp, crop_size, workers, progress)
        table = records.drop(columns=["landmarks_3d"], errors="ignore").reset_index(drop=True)
        table["key"] = keys
        table["detected"] = [r.detected for r in results]
        table["score"] = [r.score for r in results]
        table["error"] = [r.error or "" for r in results]
        table["width"] = [r.width for r in results]
        table["height"] = [r.height for r in results]

        def flat(arrays):
            return [None if a is None else a.astype(np.float32).ravel() for a in arrays]

        table["landmarks"] = flat(r.landmarks for r in results)
        table["aligned"] = flat(r.aligned for r in results)
        for name in ("scale", "angle", "tx", "ty"):
            table[f"align_{name}"] = [
                getattr(r.transform, name) if r.transform else np.nan for r in results
            ]
        table["control"] = [
            f"control/{k}.png" if d else "" for k, d in zip(keys, table["detected"], strict=True)
        ]
        table["crop_size"] = crop_size
        stored = table.assign(
            image=[os.path.relpath(p, root) for p in table["image"]],
            data_root=os.path.relpath(root, out_dir),
        )
        stored.to_parquet(tmp / LANDMARK_TABLE, index=False)
    return table, seconds
