"""Dense facial landmarks: MediaPipe 478-point FaceMesh on any image.

MediaPipe 0.10.21's legacy ``face_mesh`` solution (``refine_landmarks=True``: 468 mesh points +
10 iris points). Landmarks are returned in image pixels (x right, y down; z in pixels, smaller
is nearer the camera, as MediaPipe reports it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from paincontrol_lib import facemesh


@dataclass(frozen=True)
class FaceLandmarks:
    """One face found (or not) in one image."""

    detected: bool
    landmarks: np.ndarray | None  # (478, 3) pixels, or None when no face was found
    score: float = float("nan")  # detector confidence where a detector ran, else NaN
    box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 in pixels


def as_rgb_uint8(image) -> np.ndarray:
    """Any image array (grey, RGB, RGBA; uint8 or float 0-1) -> contiguous RGB uint8."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an H x W (x 1|3|4) image, got shape {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


class FaceMesher:
    """MediaPipe FaceMesh (478 points) for still images; reuse one instance per process."""

    def __init__(self, max_faces: int = 1, min_detection_confidence: float = 0.5):
        from mediapipe.python.solutions import face_mesh

        self._mesh = face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=max_faces,
            refine_landmarks=True,
            min_detection_confidence=min_detection_confidence,
        )

    def detect_all(self, image) -> list[FaceLandmarks]:
        rgb = as_rgb_uint8(image)
        h, w = rgb.shape[:2]
        found = self._mesh.process(rgb).multi_face_landmarks or []
        faces = []
        for face in found:
            pts = np.array([(p.x * w, p.y * h, p.z * w) for p in face.landmark], dtype=np.float64)
            if len(pts) != facemesh.N_POINTS:
                continue
            lo, hi = pts[:, :2].min(0), pts[:, :2].max(0)
            faces.append(FaceLandmarks(True, pts, box=(lo[0], lo[1], hi[0], hi[1])))
        return faces

    def __call__(self, image) -> FaceLandmarks:
        faces = self.detect_all(image)
        return faces[0] if faces else FaceLandmarks(False, None)

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------------------------
# Batches of image files


@dataclass(frozen=True)
class ImageResult:
    """Landmarks of one image file, or the reason there are none."""

    path: str
    detected: bool
    landmarks: np.ndarray | None
    score: float
    width: int
    height: int
    error: str | None = None  # unreadable file, no face, ...


def load_image(path) -> np.ndarray:
    """Read an image file as RGB uint8 (EXIF orientation applied, grey/RGBA/16-bit converted).

    Raises ``ValueError`` naming the file for anything unreadable.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float64)
                arr = arr / max(arr.max(), 1.0)
                return as_rgb_uint8(arr)
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"{path}: not a readable image ({exc})") from exc


_WORKER_MESHER: FaceMesher | None = None


def _init_worker() -> None:
    global _WORKER_MESHER
    _WORKER_MESHER = FaceMesher()


def _detect_file(path: str) -> ImageResult:
    try:
        image = load_image(path)
    except (ValueError, FileNotFoundError) as exc:
        return ImageResult(str(path), False, None, float("nan"), 0, 0, error=str(exc))
    h, w = image.shape[:2]
    face = _WORKER_MESHER(image)
    error = None if face.detected else "no face found"
    return ImageResult(str(path), face.detected, face.landmarks, face.score, w, h, error)


def detect_files(paths, workers: int = 2, progress: bool = True, desc: str = "landmarks"):
    """Run FaceMesh on every file, in ``workers`` processes; bad files are reported, not raised.

    Results come back in input order.
    """
    from tqdm.auto import tqdm

    paths = [str(p) for p in paths]
    bar = dict(total=len(paths), desc=desc, disable=not progress, mininterval=2.0)
    if workers <= 1 or len(paths) < 8:
        _init_worker()
        try:
            return [_detect_file(p) for p in tqdm(paths, **bar)]
        finally:
            _WORKER_MESHER.close()
    import multiprocessing

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers, initializer=_init_worker) as pool:
        return list(tqdm(pool.imap(_detect_file, paths, chunksize=16), **bar))
