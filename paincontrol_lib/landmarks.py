"""Dense facial landmarks: MediaPipe 478-point FaceMesh on any image.

MediaPipe 0.10.21's legacy ``face_mesh`` solution (``refine_landmarks=True``: 468 mesh points +
10 iris points). Landmarks are returned in image pixels (x right, y down; z in pixels, smaller
is nearer the camera, as MediaPipe reports it).
"""

from __future__ import annotations

import collections
import functools
from dataclasses import dataclass
from pathlib import Path

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
    """MediaPipe FaceMesh (478 points) for still images; reuse one instance per process.

    ``__call__`` (one face per image) first meshes the whole image, exactly as raw MediaPipe
    does, so large frontal faces cost no more than MediaPipe itself. When that finds nothing
    (small faces, faces far from the centre) and for ``detect_all`` (several faces), the
    full-range face detector runs first and each detected face is meshed in a square crop of
    ``crop_scale`` times its box, resized to ``crop_size`` pixels, then mapped back.
    ``score`` is the full-range detector's confidence where it ran, else NaN.
    """

    def __init__(
        self,
        min_detection_confidence: float = 0.5,
        crop_scale: float = 1.8,
        crop_size: int = 256,
    ):
        from mediapipe.python.solutions import face_detection, face_mesh

        self._mesh = face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=1,
            refine_landmarks=True,
            min_detection_confidence=min_detection_confidence,
        )
        # Full-range (model 1) and short-range (model 0) detectors: the first finds small and
        # distant faces, the second close-up portraits the first misses.
        self._detectors = [
            face_detection.FaceDetection(
                model_selection=m, min_detection_confidence=min_detection_confidence
            )
            for m in (1, 0)
        ]
        self.crop_scale = crop_scale
        self.crop_size = crop_size

    def _mesh_points(self, rgb: np.ndarray) -> np.ndarray | None:
        found = self._mesh.process(rgb).multi_face_landmarks
        if not found:
            return None
        h, w = rgb.shape[:2]
        pts = np.array([(p.x * w, p.y * h, p.z * w) for p in found[0].landmark], dtype=np.float64)
        return pts if len(pts) == facemesh.N_POINTS else None

    def face_boxes(self, image) -> list[tuple[tuple[float, float, float, float], float]]:
        """Candidate face boxes ``((x0, y0, x1, y1), score)`` in pixels, best first.

        Both detectors run on the whole image and on overlapping square tiles (half the
        shorter side, stride a quarter), so faces that are small in a large photograph are seen
        at a useful scale. Duplicates are resolved later, on the meshes.
        """
        rgb = as_rgb_uint8(image)
        h, w = rgb.shape[:2]
        windows = [(0, 0, w, h)]
        side = min(h, w) // 2
        if side >= 160:
            stride = side // 2
            for y in _tile_starts(h, side, stride):
                for x in _tile_starts(w, side, stride):
                    windows.append((x, y, side, side))
        boxes = []
        for x, y, ww, hh in windows:
            tile = np.ascontiguousarray(rgb[y : y + hh, x : x + ww])
            for detector in self._detectors:
                for det in detector.process(tile).detections or []:
                    b = det.location_data.relative_bounding_box
                    box = (
                        x + b.xmin * ww,
                        y + b.ymin * hh,
                        x + (b.xmin + b.width) * ww,
                        y + (b.ymin + b.height) * hh,
                    )
                    boxes.append((box, float(det.score[0])))
        return sorted(boxes, key=lambda item: -item[1])

    def _mesh_in_box(self, rgb: np.ndarray, box, score: float) -> FaceLandmarks | None:
        x0, y0, x1, y1 = box
        side = self.crop_scale * max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        left, top = cx - side / 2, cy - side / 2
        crop = _square_crop(rgb, left, top, side, self.crop_size)
        pts = self._mesh_points(crop)
        if pts is None:
            return None
        pts = pts * (side / self.crop_size)
        pts[:, 0] += left
        pts[:, 1] += top
        return FaceLandmarks(True, pts, score=score, box=_box_of(pts))

    def detect_all(self, image, max_faces: int | None = None) -> list[FaceLandmarks]:
        """Every face the detectors find, each meshed in its own crop, duplicates merged."""
        rgb = as_rgb_uint8(image)
        faces = []
        for box, score in self.face_boxes(rgb):
            if any(_inside(box, other.box) for other in faces):
                continue  # this face is meshed already
            face = self._mesh_in_box(rgb, box, score)
            if face is not None and not any(_same_face(face, other) for other in faces):
                faces.append(face)
            if max_faces and len(faces) >= max_faces:
                break
        return faces

    def __call__(self, image) -> FaceLandmarks:
        """The most prominent face of the image (or ``detected=False``)."""
        rgb = as_rgb_uint8(image)
        pts = self._mesh_points(rgb)
        if pts is not None:
            return FaceLandmarks(True, pts, box=_box_of(pts))
        faces = self.detect_all(rgb, max_faces=1)
        return faces[0] if faces else FaceLandmarks(False, None)

    def close(self) -> None:
        self._mesh.close()
        for detector in self._detectors:
            detector.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _box_of(pts: np.ndarray) -> tuple[float, float, float, float]:
    lo, hi = pts[:, :2].min(0), pts[:, :2].max(0)
    return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))


def _tile_starts(length: int, side: int, stride: int) -> list[int]:
    """Tile offsets along one axis, the last tile flush with the far edge."""
    n = int(np.ceil(max(length - side, 0) / stride)) + 1
    return sorted({int(round(v)) for v in np.linspace(0, max(length - side, 0), n)})


def _inside(box, mesh_box) -> bool:
    """The centre of a detector box lies within an existing mesh's box."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return mesh_box[0] <= cx <= mesh_box[2] and mesh_box[1] <= cy <= mesh_box[3]


def _same_face(a: FaceLandmarks, b: FaceLandmarks) -> bool:
    """Two meshes of one face (overlapping detector boxes) share most of their box."""
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    smaller = min((ax1 - ax0) * (ay1 - ay0), (bx1 - bx0) * (by1 - by0))
    return inter > 0.5 * smaller


def _square_crop(rgb: np.ndarray, left: float, top: float, side: float, size: int) -> np.ndarray:
    """The square ``[left, left+side) x [top, top+side)`` resampled to ``size`` px (zero pad)."""
    from PIL import Image

    scale = side / size
    # Affine map output pixel -> input pixel.
    img = Image.fromarray(rgb).transform(
        (size, size),
        Image.Transform.AFFINE,
        (scale, 0, left, 0, scale, top),
        resample=Image.Resampling.BILINEAR,
    )
    return np.asarray(img)


# ---------------------------------------------------------------------------------------------
# Alignment to a canonical frame

# Points that expressions barely move (eye corners, nose bridge and tip, forehead, temples):
# the similarity alignment is fitted on them so an expression stays in the aligned mesh.
STABLE_POINTS = (33, 133, 263, 362, 6, 168, 197, 195, 5, 4, 1, 10, 151, 9, 8, 234, 454, 127, 356)


@dataclass(frozen=True)
class Similarity:
    """``x -> scale * R x + t`` on 2D points (z scaled by ``scale``)."""

    scale: float
    angle: float  # radians
    tx: float
    ty: float

    @property
    def rotation(self) -> np.ndarray:
        c, s = np.cos(self.angle), np.sin(self.angle)
        return np.array([[c, -s], [s, c]])

    def apply(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        out = points.copy()
        out[..., :2] = self.scale * points[..., :2] @ self.rotation.T + [self.tx, self.ty]
        if points.shape[-1] > 2:
            out[..., 2:] = self.scale * points[..., 2:]
        return out

    def inverse(self) -> Similarity:
        inv_rot = self.rotation.T
        t = -(inv_rot @ np.array([self.tx, self.ty])) / self.scale
        return Similarity(1.0 / self.scale, -self.angle, float(t[0]), float(t[1]))


def canonical_landmarks() -> np.ndarray:
    """The canonical frame: the AU->mesh model's neutral face, frontal, in a unit square.

    Framed like SynthPain (forehead-to-chin spans 0.6 of the height, face centred), so aligned
    landmarks times an image size are control-image coordinates.
    """
    from paincontrol_lib.aumesh import default_model

    neutral = default_model().neutral * np.array([1.0, -1.0, 1.0])  # y down
    top, chin = neutral[facemesh.FOREHEAD_TOP], neutral[facemesh.CHIN]
    scale = 0.6 / (chin[1] - top[1])
    centre = 0.5 * (top + chin)
    return (neutral - centre) * scale + np.array([0.5, 0.5, 0.0])


def fit_similarity(source: np.ndarray, target: np.ndarray, points=STABLE_POINTS) -> Similarity:
    """The similarity mapping ``source`` landmarks onto ``target`` on ``points``."""
    idx = list(points)
    scale, rot, t = facemesh.similarity_fit(np.asarray(source)[idx], np.asarray(target)[idx])
    return Similarity(scale, float(np.arctan2(rot[1, 0], rot[0, 0])), float(t[0]), float(t[1]))


def align(landmarks: np.ndarray) -> tuple[np.ndarray, Similarity]:
    """Landmarks in the canonical frame and the transform that took them there
    (``transform.inverse().apply(aligned)`` gives the image coordinates back)."""
    transform = fit_similarity(landmarks, canonical_landmarks())
    return transform.apply(landmarks), transform


# ---------------------------------------------------------------------------------------------
# Control images

# One colour per region, left and right different (RGB). The nose is drawn (AU9 wrinkles it;
# the public MediaPipe-face ControlNet leaves it out). The subject's right is the image's left.
CONTROL_COLOURS = {
    "tessellation": (70, 70, 70),
    "face_oval": (230, 230, 230),
    "nose": (40, 220, 40),
    "right_brow": (255, 90, 0),
    "left_brow": (255, 220, 0),
    "right_eye": (0, 110, 255),
    "left_eye": (0, 240, 220),
    "lips": (255, 0, 90),
    "right_iris": (255, 0, 255),
    "left_iris": (150, 60, 255),
}


def render_control(
    landmarks: np.ndarray,
    size: int | tuple[int, int],
    source_size: tuple[int, int] | None = None,
    supersample: int | None = None,
    tessellation: bool = True,
) -> np.ndarray:
    """Draw the dense mesh as a control image (RGB uint8) of ``size`` (int or (w, h)).

    ``landmarks`` are pixels of an image of ``source_size`` (w, h; default: ``size``), so a mesh
    found on a 512 px photo can be drawn at 64 px. Lines are drawn at ``supersample`` x and
    shrunk (default: enough for a 256 px canvas, 4x at 64 px), which keeps them legible.
    Irises are drawn only inside the eye opening: a closed eye shows no iris.
    """
    from PIL import Image, ImageDraw

    w, h = (size, size) if isinstance(size, int) else size
    sw, sh = source_size or (w, h)
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    if lm.shape[0] != facemesh.N_POINTS or not np.isfinite(lm).all():
        raise ValueError(f"expected {facemesh.N_POINTS} finite landmarks, got {lm.shape}")
    k = supersample or max(2, -(-256 // min(w, h)))
    pts = lm * [w / sw * k, h / sh * k]
    width = max(1, int(round(k * min(w, h) / 96)))
    canvas = Image.new("RGB", (w * k, h * k), 0)
    draw = ImageDraw.Draw(canvas)
    if tessellation:
        for trail in _tessellation_trails():
            draw.line(pts[trail].ravel().tolist(), fill=CONTROL_COLOURS["tessellation"], width=1)
    paths = facemesh.region_paths()
    for region in ("face_oval", "nose", "right_brow", "left_brow", "right_eye", "left_eye", "lips"):
        for path in paths[region]:
            draw.line(pts[path].ravel().tolist(), fill=CONTROL_COLOURS[region], width=width)
    for eye, centre, ring in (
        ("right_eye", facemesh.RIGHT_IRIS_CENTER, facemesh.RIGHT_IRIS_RING),
        ("left_eye", facemesh.LEFT_IRIS_CENTER, facemesh.LEFT_IRIS_RING),
    ):
        radius = np.linalg.norm(pts[list(ring)] - pts[centre], axis=1).mean()
        iris = Image.new("RGB", canvas.size, 0)
        ImageDraw.Draw(iris).ellipse(
            [tuple(pts[centre] - radius), tuple(pts[centre] + radius)],
            fill=CONTROL_COLOURS[eye.replace("eye", "iris")],
        )
        opening = Image.new("L", canvas.size, 0)
        ImageDraw.Draw(opening).polygon(
            [tuple(p) for p in pts[facemesh.boundary_loops()[eye]]], fill=255
        )
        canvas.paste(iris, (0, 0), opening)
    return np.asarray(canvas.resize((w, h), Image.Resampling.BOX))


@functools.cache
def _tessellation_trails() -> tuple[np.ndarray, ...]:
    """The mesh edges chained into few long polylines (one draw call each, not 1,300)."""
    tris = facemesh.triangles()
    edges = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    remaining = collections.defaultdict(set)
    for a, b in np.unique(np.sort(edges, axis=1), axis=0):
        remaining[a].add(b)
        remaining[b].add(a)
    trails = []
    for start in sorted(remaining):
        while remaining[start]:
            trail, cur = [start], start
            while remaining[cur]:
                nxt = min(remaining[cur])
                remaining[cur].discard(nxt)
                remaining[nxt].discard(cur)
                trail.append(nxt)
                cur = nxt
            trails.append(np.asarray(trail))
    return tuple(trails)


# ---------------------------------------------------------------------------------------------
# Batches of image files

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


def load_image(path) -> np.ndarray:
    """Read an image file as RGB uint8 (EXIF orientation applied, grey/RGBA/16-bit converted).

    Raises ``ValueError`` naming the file for anything unreadable.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.format in ("JPEG", "TIFF", "WEBP", "MPO"):  # formats that carry EXIF
                img = ImageOps.exif_transpose(img)
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(img, dtype=np.float64)
                arr = arr / max(arr.max(), 1.0)
                return as_rgb_uint8(arr)
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as exc:
        raise ValueError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc


def aligned_crop(image: np.ndarray, transform: Similarity, size: int) -> np.ndarray:
    """The face warped into the canonical frame at ``size`` px (what the model is trained on)."""
    from PIL import Image

    inv = transform.inverse()
    a = inv.scale * inv.rotation / size
    coeffs = (a[0, 0], a[0, 1], inv.tx, a[1, 0], a[1, 1], inv.ty)
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    fill = tuple(int(v) for v in np.median(border, axis=0))  # outside the photo: its border colour
    warped = Image.fromarray(image).transform(
        (size, size),
        Image.Transform.AFFINE,
        coeffs,
        resample=Image.Resampling.BILINEAR,
        fillcolor=fill,
    )
    return np.asarray(warped)


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

    from tqdm.auto import tqdm

    paths = [str(p) for p in paths]
    keys = list(keys) if keys is not None else [None] * len(paths)
    jobs = list(zip(paths, keys, strict=True))
    init = (crop_size, str(out_dir) if out_dir else None)
    bar = dict(total=len(jobs), desc=desc, disable=not progress, mininterval=2.0)
    if workers <= 1 or len(jobs) < 4 * workers:
        _init_worker(*init)
        try:
            start = time.perf_counter()
            results = [_work(job) for job in tqdm(jobs, **bar)]
            return results, time.perf_counter() - start
        finally:
            _WORKER.pop("mesher").close()
    import multiprocessing

    # spawn, not fork: a forked copy of a process that has run MediaPipe corrupts its heap.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=init) as pool:
        pool.map(_ready, range(workers), chunksize=1)
        start = time.perf_counter()
        results = list(tqdm(pool.imap(_work, jobs, chunksize=16), **bar))
        return results, time.perf_counter() - start


def process_files(paths, keys=None, out_dir=None, crop_size=128, workers=2, progress=True):
    """``run_batch`` without the timing."""
    return run_batch(paths, keys, out_dir, crop_size, workers, progress)[0]


def detect_files(paths, workers: int = 2, progress: bool = True) -> list[ImageResult]:
    """Mesh every file (no outputs written)."""
    return process_files(paths, workers=workers, progress=progress)


# ---------------------------------------------------------------------------------------------
# The landmark stage: records in, landmark table + aligned crops + control images out

LANDMARK_TABLE = "landmarks.parquet"


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
    ``landmarks.parquet`` and ``control/``. Returns ``(table, seconds)``."""
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
        table.to_parquet(tmp / LANDMARK_TABLE, index=False)
    return table, seconds


def load_landmark_table(out_dir: str | Path):
    import pandas as pd

    path = Path(out_dir) / LANDMARK_TABLE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the landmark stage (`dvc repro landmarks`)")
    return pd.read_parquet(path)


def row_transform(row) -> Similarity:
    """The image -> canonical similarity stored in a landmark-table row."""
    return Similarity(row.align_scale, row.align_angle, row.align_tx, row.align_ty)


def stack_landmarks(table, column: str = "landmarks") -> np.ndarray:
    """(n, 478, 3) array from a landmark-table column; rows without a face are NaN."""
    out = np.full((len(table), facemesh.N_POINTS, 3), np.nan)
    for i, value in enumerate(table[column]):
        if value is not None:
            out[i] = np.asarray(value).reshape(facemesh.N_POINTS, 3)
    return out


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


def landmark_metrics(table, seconds: float, raw_rate: float | None) -> dict:
    """``reports/metrics/landmarks.json``: detection, NME against ground truth where known,
    throughput of the stage and its ratio to raw MediaPipe measured in the same run."""
    detected = table["detected"].to_numpy(bool)
    nme = None
    if "landmarks_2d" in table and detected.any():
        truth = np.stack([np.asarray(v).reshape(-1, 2) for v in table["landmarks_2d"][detected]])
        found = stack_landmarks(table[detected])
        nme = float(facemesh.nme(found, truth).mean())
    rate = len(table) / seconds
    return {
        "n_images": int(len(table)),
        "detection_rate": float(detected.mean()),
        "nme": nme,
        "images_per_second": rate,
        "raw_mediapipe_images_per_second": raw_rate,
        "throughput_ratio_vs_mediapipe": rate / raw_rate if raw_rate else None,
        "errors": table.loc[~detected, "error"].value_counts().to_dict(),
    }


def draw_points(image: np.ndarray, landmarks: np.ndarray, colour=(255, 0, 0), radius: float = 1.0):
    """A copy of ``image`` with landmark dots drawn (for overlay figures)."""
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(as_rgb_uint8(image))
    draw = ImageDraw.Draw(canvas)
    for x, y in np.asarray(landmarks)[:, :2]:
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=tuple(colour))
    return np.asarray(canvas)
