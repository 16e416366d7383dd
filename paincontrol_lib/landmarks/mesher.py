"""MediaPipe 478-point FaceMesh on any image.

MediaPipe 0.10.21's legacy ``face_mesh`` solution (``refine_landmarks=True``: 468 mesh points +
10 iris points). Landmarks are returned in image pixels (x right, y down; z in pixels, smaller
is nearer the camera, as MediaPipe reports it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from paincontrol_lib import facemesh
from paincontrol_lib.landmarks.image import as_rgb_uint8


@dataclass(frozen=True)
class FaceLandmarks:
    """One face found (or not) in one image."""

    detected: bool
    landmarks: np.ndarray | None  # (478, 3) pixels, or None when no face was found
    score: float = float("nan")  # detector confidence where a detector ran, else NaN
    box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 in pixels


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
