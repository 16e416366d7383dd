"""Face-identity embeddings: does an edited face still show the same person?

Three backends, all fed the MediaPipe 478-point mesh we already have (no second face detector):

* ``SynthFaceIdentity`` (``"synthface"``): SynthPain's ArcFace, the instrument that scores
  identity on SynthPain. A small CNN trained here by metric learning (CosFace margin) on 1,100
  rendered people no stage ever uses (``paincontrol_lib.model.identity_encoder``), reading a
  tight ArcFace-aligned crop with everything outside the face oval greyed out
  (:func:`face_crop`): SynthPain gives each person a backdrop and hair, and an encoder that saw
  them would measure the backdrop. Weights shipped in ``pretrained/identity-encoder/``
  (``make identity-encoder`` retrains them). 128-d, L2-normalised.
* ``DlibIdentity`` (``"dlib"``): dlib's 128-d ResNet descriptor, weights from the installed
  ``face-recognition-models`` package, so it works offline. Raw descriptors, so dlib's usual
  "same person below L2 distance 0.6" rule applies to ``l2_distance``. On SynthPain it barely
  separates people (a stranger scores 0.92 cosine, the same person 0.97): the second judge there,
  and what the first shipped checkpoint's identity tokens were made from.
* ``ConditioningIdentity`` (``"synthface-conditioning"``): a second in-domain encoder, trained
  by the same recipe on other people (seed 31, ``make identity-adapter``), that the shipped
  model's identity tokens are made from (``train.identity_backend``). It never scores anything,
  and the instrument never conditions: a model conditioned on its own judge could be scored on
  features it was handed rather than on the face it drew.
* ``ArcFaceIdentity`` (``"arcface"``): insightface's ArcFace (``w600k_r50.onnx`` of the
  ``buffalo_l`` pack, 512-d, L2-normalised) through onnxruntime, for real photographs. The
  weights are not shipped and never downloaded.

``EmbeddingCache`` keeps embeddings of image files on disk so evaluations do not recompute them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import warnings
from pathlib import Path

import numpy as np

from paincontrol_lib import facemesh
from paincontrol_lib.config import REPO_ROOT

# dlib's 5-point layout (shape_predictor_5_face_landmarks) -> MediaPipe index. Verified by
# running dlib's own 5-point predictor in the MediaPipe face box on the 18 meshable faces of the
# bundled photographs (astronaut included): median distance to the named MediaPipe point, in
# inter-ocular distances, 0.023 / 0.024 / 0.019 / 0.028 / 0.037; the nearest mesh vertex of
# all is at most one eyelid vertex away (466, 398, 33, 155|173, 2|164). Descriptors from this
# mapping differ from those from dlib's own 5 points by L2 0.04-0.19 (median 0.09).
DLIB_FROM_MEDIAPIPE = (
    facemesh.LEFT_EYE_OUTER,  # 0: subject's left eye, outer corner (image right) = 263
    facemesh.LEFT_EYE_INNER,  # 1: subject's left eye, inner corner = 362
    facemesh.RIGHT_EYE_OUTER,  # 2: subject's right eye, outer corner (image left) = 33
    facemesh.RIGHT_EYE_INNER,  # 3: subject's right eye, inner corner = 133
    2,  # 4: nose base (subnasale, under the tip)
)

# insightface's ``arcface_dst``: where the 5 points land in the 112 x 112 ArcFace input, in image
# order: image-left eye, image-right eye, nose tip, image-left and image-right mouth corner.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
ARCFACE_SIZE = 112
ARCFACE_FILE = "w600k_r50.onnx"
ARCFACE_PACK = "buffalo_l"
MOUTH_RIGHT, MOUTH_LEFT = 61, 291  # subject's right (image left) and left mouth corner


def _points(landmarks) -> np.ndarray:
    """(478, 2) pixel coordinates from a (478, 2|3) array or a ``FaceLandmarks``."""
    if hasattr(landmarks, "landmarks"):  # FaceLandmarks
        if landmarks.landmarks is None:
            raise ValueError("no face was found: nothing to embed")
        landmarks = landmarks.landmarks
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] != facemesh.N_POINTS or pts.shape[1] not in (2, 3):
        raise ValueError(f"expected ({facemesh.N_POINTS}, 2|3) landmarks, got {pts.shape}")
    if not np.isfinite(pts[:, :2]).all():
        raise ValueError("landmarks contain NaN or inf")
    return pts[:, :2]


def _rgb(image) -> np.ndarray:
    from paincontrol_lib.landmarks.image import as_rgb_uint8

    return as_rgb_uint8(image)


# ---------------------------------------------------------------------------------------------
# dlib


def dlib_model_dir() -> Path:
    """The ``models`` folder of ``face-recognition-models``, found without importing it (its
    ``__init__`` imports the deprecated ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "face-recognition-models is not installed (pip install face-recognition-models)"
        )
    return Path(spec.submodule_search_locations[0]) / "models"


class DlibIdentity:
    """dlib's 128-d face descriptor, the face chip placed by MediaPipe points, not dlib's
    detector or shape predictor. ``num_jitters`` > 1 averages randomly jittered crops (slower,
    slightly steadier); 1 is a single, deterministic pass."""

    dim = 128

    def __init__(self, num_jitters: int = 1, padding: float = 0.25):
        import dlib

        path = dlib_model_dir() / "dlib_face_recognition_resnet_model_v1.dat"
        if not path.is_file():
            raise FileNotFoundError(f"{path} missing: reinstall face-recognition-models")
        self._dlib = dlib
        self._model = dlib.face_recognition_model_v1(str(path))
        self.num_jitters = int(num_jitters)
        self.padding = float(padding)

    @property
    def name(self) -> str:
        """Cache key part: jittered descriptors differ from plain ones."""
        return "dlib" if self.num_jitters <= 1 else f"dlib-jitter{self.num_jitters}"

    def shape(self, landmarks):
        """The ``dlib.full_object_detection`` (5 points, mesh box) for MediaPipe landmarks."""
        dlib = self._dlib
        pts = _points(landmarks)
        (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
        box = dlib.rectangle(int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1)))
        parts = [
            dlib.point(int(round(pts[i, 0])), int(round(pts[i, 1]))) for i in DLIB_FROM_MEDIAPIPE
        ]
        return dlib.full_object_detection(box, parts)

    def embed(self, image, landmarks) -> np.ndarray:
        """(128,) float32 descriptor of the face the landmarks outline."""
        desc = self._model.compute_face_descriptor(
            _rgb(image), self.shape(landmarks), self.num_jitters, self.padding
        )
        return np.asarray(desc, dtype=np.float32)

    def embed_many(self, images, landmarks_list) -> np.ndarray:
        """(n, 128) descriptors, one per (image, landmarks) pair."""
        return _stack(self, images, landmarks_list)


def _stack(backend, images, landmarks_list) -> np.ndarray:
    images, landmarks_list = list(images), list(landmarks_list)
    if len(images) != len(landmarks_list):
        raise ValueError(f"{len(images)} images but {len(landmarks_list)} landmark sets")
    out = [backend.embed(img, lm) for img, lm in zip(images, landmarks_list, strict=True)]
    return np.stack(out) if out else np.zeros((0, backend.dim), np.float32)


# ---------------------------------------------------------------------------------------------
# ArcFace


def arcface_points(landmarks, eyes: str = "corners") -> np.ndarray:
    """The 5 ArcFace keypoints (image order, as ``ARCFACE_TEMPLATE``) from the mesh.

    Eye centres are the mean of the two eye corners by default: they stay put when the eyes
    squeeze shut in pain, where the iris estimate (``eyes="iris"``: 468/473) drifts.
    """
    pts = _points(landmarks)
    if eyes == "corners":
        right = pts[[facemesh.RIGHT_EYE_OUTER, facemesh.RIGHT_EYE_INNER]].mean(0)
        left = pts[[facemesh.LEFT_EYE_OUTER, facemesh.LEFT_EYE_INNER]].mean(0)
    elif eyes == "iris":
        right, left = pts[facemesh.RIGHT_IRIS_CENTER], pts[facemesh.LEFT_IRIS_CENTER]
    else:
        raise ValueError(f"eyes must be 'corners' or 'iris', got {eyes!r}")
    # The subject's right eye and mouth corner are on the image's left.
    return np.stack([right, left, pts[facemesh.NOSE_TIP], pts[MOUTH_RIGHT], pts[MOUTH_LEFT]])


def arcface_transform(points: np.ndarray, size: int = ARCFACE_SIZE) -> np.ndarray:
    """The 2 x 3 similarity (Umeyama least squares, as insightface's ``estimate_norm``) taking
    the 5 image points onto the template scaled to ``size``."""
    scale, rot, t = facemesh.similarity_fit(points, ARCFACE_TEMPLATE * (size / ARCFACE_SIZE))
    return np.hstack([scale * rot, t[:, None]])


def arcface_crop(image, landmarks, size: int = ARCFACE_SIZE, eyes: str = "corners") -> np.ndarray:
    """The aligned ``size`` x ``size`` RGB face crop ArcFace reads (black outside the photo,
    like insightface's ``norm_crop``)."""
    import cv2

    matrix = arcface_transform(arcface_points(landmarks, eyes), size)
    return cv2.warpAffine(_rgb(image), matrix, (size, size), borderValue=0.0)


def arcface_blob(crops) -> np.ndarray:
    """(n, 3, H, W) float32 network input from RGB uint8 crops: ``(x - 127.5) / 127.5``.

    Channels stay RGB: insightface reads BGR with OpenCV and swaps to RGB in ``blobFromImages``
    (``swapRB=True``), so the network sees RGB, which is what our images already are.
    """
    arr = np.stack([np.asarray(c, dtype=np.float32) for c in crops])
    return np.ascontiguousarray(((arr - 127.5) / 127.5).transpose(0, 3, 1, 2))


def arcface_search_dirs(model_dir: str | Path | None = None) -> list[Path]:
    """Where ``w600k_r50.onnx`` is looked for: the given folder only, else the folder
    insightface unpacks ``buffalo_l`` into."""
    if model_dir is not None:
        return [Path(model_dir).expanduser()]
    return [Path("~/.insightface/models").expanduser() / ARCFACE_PACK]


class ArcFaceIdentity:
    """insightface ArcFace-R50 (WebFace600K) on the CPU, L2-normalised 512-d embeddings.

    Raises ``FileNotFoundError`` (saying how to get the weights) when ``w600k_r50.onnx`` is not
    in ``model_dir`` (default ``~/.insightface/models/buffalo_l/``); nothing is downloaded.
    """

    dim = 512

    def __init__(
        self,
        model_dir: str | Path | None = None,
        eyes: str = "corners",
        threads: int | None = None,
        batch_size: int = 32,
    ):
        dirs = arcface_search_dirs(model_dir)
        found = [d / ARCFACE_FILE for d in dirs if (d / ARCFACE_FILE).is_file()]
        if not found:
            raise FileNotFoundError(
                f"ArcFace weights {ARCFACE_FILE} not found in {', '.join(map(str, dirs))}. It is "
                f"the recognition model of insightface's '{ARCFACE_PACK}' model pack (licensed "
                f"for non-commercial research): download {ARCFACE_PACK}.zip from insightface's "
                f"model zoo (github.com/deepinsight/insightface, python-package README) and unzip "
                f"it into ~/.insightface/models/{ARCFACE_PACK}/, or pass model_dir=. This "
                f"project never downloads it."
            )
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        self.model_path = found[0]
        self._session = onnxruntime.InferenceSession(
            str(self.model_path), options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        out_dim = self._session.get_outputs()[0].shape[-1]
        if isinstance(out_dim, int):
            self.dim = out_dim
        self.eyes = eyes
        self.batch_size = int(batch_size)
        self.name = f"arcface-{Path(ARCFACE_FILE).stem}-{eyes}"

    def _run(self, crops) -> np.ndarray:
        out = self._session.run(None, {self._input: arcface_blob(crops)})[0]
        out = np.asarray(out, dtype=np.float32).reshape(len(crops), -1)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def embed(self, image, landmarks) -> np.ndarray:
        """(512,) unit-length embedding of the face the landmarks outline."""
        return self._run([arcface_crop(image, landmarks, eyes=self.eyes)])[0]

    def embed_many(self, images, landmarks_list) -> np.ndarray:
        """(n, 512) embeddings, run through the network ``batch_size`` faces at a time."""
        images, landmarks_list = list(images), list(landmarks_list)
        if len(images) != len(landmarks_list):
            raise ValueError(f"{len(images)} images but {len(landmarks_list)} landmark sets")
        crops = [
            arcface_crop(img, lm, eyes=self.eyes)
            for img, lm in zip(images, landmarks_list, strict=True)
        ]
        if not crops:
            return np.zeros((0, self.dim), np.float32)
        step = self.batch_size
        return np.concatenate([self._run(crops[i : i + step]) for i in range(0, len(crops), step)])


# ---------------------------------------------------------------------------------------------
# SynthFace: the in-domain encoder

FACE_CROP = 64  # px of the aligned crop the encoder reads
OVAL_KEEP = 0.94  # the face oval shrunk toward its centre: its outline pixels are half backdrop
MASK_GREY = 128  # what replaces everything outside the face oval
ENCODER_DIR = REPO_ROOT / "pretrained" / "identity-encoder"
ENCODER_WEIGHTS = "encoder.safetensors"
ENCODER_CONFIG = "encoder.json"
ENCODER_TARGET = "make identity-encoder"  # the command that rebuilds ENCODER_DIR
CONDITIONING_DIR = REPO_ROOT / "pretrained" / "identity-encoder-conditioning"
CONDITIONING_TARGET = "make identity-adapter"  # rebuilds CONDITIONING_DIR and the adapter


def face_crop(image, landmarks, size: int = FACE_CROP) -> np.ndarray:
    """The ``size`` x ``size`` RGB face the encoder reads: aligned by the ArcFace 5-point
    similarity (:func:`arcface_transform`: eye-corner centres, nose tip, mouth corners), drawn
    at twice the size and area-averaged down (an upscaled 64 px output and a 128 px photo then
    alias alike), everything outside the face oval (``OVAL_KEEP`` of it, soft-edged) grey.

    The oval is the mesh's own, so the same points place the crop and the mask whether the mesh
    is MediaPipe's (inference) or the renderer's ground truth (training)."""
    import cv2

    pts = _points(landmarks)
    matrix = arcface_transform(arcface_points(pts), 2 * size)
    big = cv2.warpAffine(_rgb(image), matrix, (2 * size, 2 * size), borderValue=(MASK_GREY,) * 3)
    crop = cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    oval = pts[facemesh.boundary_loops()["face_oval"]] @ (matrix[:, :2].T / 2) + matrix[:, 2] / 2
    centre = oval.mean(0)
    oval = centre + OVAL_KEEP * (oval - centre)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round((oval - 0.5) * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    weight = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 0.8)[..., None]
    out = crop * weight + MASK_GREY * (1 - weight)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def identity_network(channels=(24, 48, 96, 160), dim: int = 128, crop: int = FACE_CROP):
    """The encoder's layers (torch): a stride-2 3x3 conv stem to ``channels[0]``, then per further
    width a 3x3 conv and a stride-2 3x3 conv (each with batch norm and ReLU; 64 -> 4 px), then a
    linear layer to ``dim`` and batch norm: 0.85 M weights, 3.4 MB. The output is L2-normalised
    by its user (:func:`encode`, the training loss)."""
    import torch.nn as nn

    def conv(cin, cout, stride):
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True)]  # fmt: skip

    layers = conv(3, channels[0], 2)
    for cin, width in zip(channels[:-1], channels[1:], strict=True):
        layers += conv(cin, width, 1) + conv(width, width, 2)
    side = crop // 2 ** len(channels)
    head = nn.Linear(channels[-1] * side * side, dim, bias=False)
    layers += [nn.Flatten(), nn.Dropout(0.2), head, nn.BatchNorm1d(dim)]
    return nn.Sequential(*layers)


def crop_tensor(crops):
    """(n, 3, H, W) float32 network input in [-1, 1] from (n, H, W, 3) uint8 crops."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1


def encode(network, crops, batch_size: int = 256) -> np.ndarray:
    """(n, dim) unit-length float32 embeddings of uint8 crops, the network in eval mode."""
    import torch

    network.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(crops), batch_size):
            z = network(crop_tensor(crops[i : i + batch_size]))
            out.append(torch.nn.functional.normalize(z, dim=1).numpy())
    return (
        np.concatenate(out).astype(np.float32)
        if out
        else np.zeros((0, network[-1].num_features), np.float32)
    )


class SynthFaceIdentity:
    """SynthPain's in-domain identity encoder (module docstring), from ``model_dir`` (default
    ``pretrained/identity-encoder/``: ``encoder.safetensors`` and ``encoder.json``). CPU, one
    torch thread (the same embeddings on any machine with the same wheels, and as fast: the
    network is small). Raises ``FileNotFoundError`` naming ``make identity-encoder`` when the
    weights are missing."""

    default_dir, target = ENCODER_DIR, ENCODER_TARGET

    def __init__(self, model_dir: str | Path | None = None, batch_size: int = 256):
        import json

        folder = Path(model_dir) if model_dir is not None else self.default_dir
        weights, config = folder / ENCODER_WEIGHTS, folder / ENCODER_CONFIG
        missing = [p.name for p in (weights, config) if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"identity encoder {', '.join(missing)} not found in {folder}: `{self.target}` "
                "renders and trains it (about an hour on two CPU cores)"
            )
        from safetensors.torch import load_file

        from paincontrol_lib.io import file_digest

        self.config = json.loads(config.read_text())
        self.network = identity_network(
            tuple(self.config["channels"]), self.config["dim"], self.config["crop"]
        )
        self.network.load_state_dict(load_file(str(weights)))
        self.network.eval()
        self.dim = int(self.config["dim"])
        self.crop = int(self.config["crop"])
        self.batch_size = int(batch_size)
        self.model_dir = folder
        # Cache key part: other weights, other embeddings.
        self.name = f"synthface-{file_digest(weights)[:12]}"

    def crops(self, images, landmarks_list) -> np.ndarray:
        """(n, crop, crop, 3) uint8: :func:`face_crop` of each (image, landmarks) pair."""
        images, landmarks_list = list(images), list(landmarks_list)
        if len(images) != len(landmarks_list):
            raise ValueError(f"{len(images)} images but {len(landmarks_list)} landmark sets")
        out = [face_crop(im, lm, self.crop) for im, lm in zip(images, landmarks_list, strict=True)]
        return np.stack(out) if out else np.zeros((0, self.crop, self.crop, 3), np.uint8)

    def embed_crops(self, crops) -> np.ndarray:
        """(n, dim) embeddings of crops made by :meth:`crops`."""
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return encode(self.network, np.asarray(crops), self.batch_size)
        finally:
            torch.set_num_threads(threads)

    def embed(self, image, landmarks) -> np.ndarray:
        """(dim,) unit-length embedding of the face the landmarks outline."""
        return self.embed_many([image], [landmarks])[0]

    def embed_many(self, images, landmarks_list) -> np.ndarray:
        """(n, dim) embeddings, one per (image, landmarks) pair, run in batches."""
        return self.embed_crops(self.crops(images, landmarks_list))


class ConditioningIdentity(SynthFaceIdentity):
    """The encoder the model's identity tokens are made from (module docstring): the same
    network and crop as the instrument, other weights (``pretrained/identity-encoder-conditioning``,
    trained on people of another seed)."""

    default_dir, target = CONDITIONING_DIR, CONDITIONING_TARGET


BACKENDS = {
    "synthface": SynthFaceIdentity,
    "synthface-conditioning": ConditioningIdentity,
    "dlib": DlibIdentity,
    "arcface": ArcFaceIdentity,
}


def make_identity(backend: str = "dlib", **kw):
    """An identity backend by name (``"synthface"`` | ``"synthface-conditioning"`` | ``"dlib"`` |
    ``"arcface"``), keywords to its constructor."""
    try:
        cls = BACKENDS[backend]
    except KeyError:
        raise ValueError(
            f"unknown identity backend {backend!r}; choose one of: {', '.join(BACKENDS)}"
        ) from None
    return cls(**kw)


# ---------------------------------------------------------------------------------------------
# Comparing embeddings


def _rows(x) -> tuple[np.ndarray, bool]:
    arr = np.asarray(x, dtype=np.float64)
    return (arr[None], True) if arr.ndim == 1 else (arr, False)


def _shaped(matrix: np.ndarray, a_vec: bool, b_vec: bool):
    if a_vec and b_vec:
        return float(matrix[0, 0])
    return matrix[0] if a_vec else matrix[:, 0] if b_vec else matrix


def cosine_similarity(a, b):
    """Cosine similarity of every row of ``a`` (n, d) with every row of ``b`` (m, d): (n, m);
    a 1-D argument drops its axis (two vectors give a float)."""
    (a, av), (b, bv) = _rows(a), _rows(b)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return _shaped(a @ b.T, av, bv)


def l2_distance(a, b):
    """Euclidean distance of every row of ``a`` with every row of ``b`` (shapes as
    ``cosine_similarity``). On raw dlib descriptors, < 0.6 is dlib's "same person"."""
    (a, av), (b, bv) = _rows(a), _rows(b)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
    return _shaped(np.sqrt(np.maximum(sq, 0.0)), av, bv)


def nearest_identity(query_embeddings, reference_embeddings, reference_labels) -> np.ndarray:
    """The label of the most cosine-similar reference for each query row.

    On unit vectors ``|a - b|^2 = 2 - 2 cos``, so cosine and L2 pick the same neighbour. dlib's
    raw descriptors are not unit length (norms 1.3-1.6 on the bundled photos), so on them L2
    (dlib's 0.6 rule) and cosine agree only after normalising; ArcFace's already are.
    """
    labels = np.asarray(reference_labels)
    ref = np.asarray(reference_embeddings)
    if len(labels) != len(ref):
        raise ValueError(f"{len(ref)} reference embeddings but {len(labels)} labels")
    sim = np.atleast_2d(cosine_similarity(np.atleast_2d(query_embeddings), ref))
    return labels[np.argmax(sim, axis=1)]


def top1_accuracy(query_embeddings, reference_embeddings, reference_labels, query_labels) -> float:
    """Share of queries whose nearest reference (``nearest_identity``) has their label."""
    predicted = nearest_identity(query_embeddings, reference_embeddings, reference_labels)
    truth = np.asarray(query_labels)
    if len(truth) != len(predicted):
        raise ValueError(f"{len(predicted)} queries but {len(truth)} query labels")
    return float(np.mean(predicted == truth))


def verification(embeddings: np.ndarray, people: np.ndarray) -> dict:
    """Verification over every pair of ``embeddings``: ROC AUC of cosine similarity for same vs
    different ``people``, the genuine and impostor means, and the pairs' similarities
    (``genuine``, ``impostor``) for their distributions."""
    from sklearn.metrics import roc_auc_score

    sim = np.atleast_2d(cosine_similarity(embeddings, embeddings))
    people = np.asarray(people)
    upper = np.triu_indices(len(people), 1)
    same = (people[:, None] == people[None])[upper]
    scores = sim[upper]
    if same.all() or not same.any():
        raise ValueError("verification needs pairs of the same and of different people")
    return {
        "verification_auc": float(roc_auc_score(same, scores)),
        "genuine_mean": float(scores[same].mean()),
        "impostor_mean": float(scores[~same].mean()),
        "n_genuine_pairs": int(same.sum()),
        "n_impostor_pairs": int((~same).sum()),
        "genuine": scores[same],
        "impostor": scores[~same],
    }


# ---------------------------------------------------------------------------------------------
# On-disk cache


def landmarks_hash(landmarks) -> str:
    """Short hash of the 2D landmarks (to 1/1000 px), part of a cache key."""
    pts = np.round(_points(landmarks), 3).astype(np.float32)
    return hashlib.sha1(pts.tobytes()).hexdigest()[:12]


class EmbeddingCache:
    """Embeddings of image files in ``<folder>/identity-<backend>.npz``.

    A key is (absolute path, size, mtime_ns, backend name, landmarks hash), so an edited file,
    another backend or other landmarks miss the cache. ``save()`` writes atomically. A corrupt
    or unreadable cache file is reported with a warning and rebuilt from empty, never fatal:
    it only costs recomputation.
    """

    def __init__(self, folder: str | Path, backend):
        self.backend = backend
        self.path = Path(folder) / f"identity-{backend.name}.npz"
        self._entries: dict[str, np.ndarray] = {}
        self._dirty = False
        if self.path.is_file():
            self._load()

    def _load(self) -> None:
        try:
            with np.load(self.path, allow_pickle=False) as data:
                keys, values = data["keys"], data["embeddings"]
            if values.ndim != 2 or len(keys) != len(values):
                raise ValueError(f"keys {keys.shape} do not match embeddings {values.shape}")
            self._entries = {str(k): v for k, v in zip(keys, values, strict=True)}
        except Exception as exc:  # any unreadable file: rebuild rather than fail the run
            warnings.warn(
                f"{self.path}: corrupt identity cache ({type(exc).__name__}: {exc}); "
                "starting empty, it will be rebuilt on save()",
                stacklevel=3,
            )
            self._entries = {}
            self._dirty = True

    def key(self, path, landmarks) -> str:
        path = Path(path).resolve()
        stat = path.stat()
        parts = (str(path), stat.st_size, stat.st_mtime_ns, self.backend.name)
        return "|".join(map(str, (*parts, landmarks_hash(landmarks))))

    def __len__(self) -> int:
        return len(self._entries)

    def get_or_compute(self, path, image, landmarks) -> np.ndarray:
        """The cached embedding of this face in the file at ``path``, else computed from
        ``image`` (read from ``path`` when ``None``) and stored."""
        key = self.key(path, landmarks)
        hit = self._entries.get(key)
        if hit is not None:
            return hit
        if image is None:
            from paincontrol_lib.landmarks.image import load_image

            image = load_image(path)
        value = np.asarray(self.backend.embed(image, landmarks), dtype=np.float32)
        self._entries[key] = value
        self._dirty = True
        return value

    def save(self) -> Path:
        """Write the cache (atomically) if anything changed."""
        if self._dirty:
            from paincontrol_lib.io import atomic_write_bytes

            keys = np.array(list(self._entries), dtype=str)
            values = (
                np.stack(list(self._entries.values()))
                if self._entries
                else np.zeros((0, self.backend.dim), np.float32)
            )
            buf = io.BytesIO()
            np.savez(buf, keys=keys, embeddings=values)
            atomic_write_bytes(self.path, buf.getvalue())
            self._dirty = False
        return self.path
