"""SynthPain's identity encoder (``identity.SynthFaceIdentity``) against known answers, with the
shipped weights on a handful of renders of the default dataset's *test* people (never trained on):
the exact answer scores the ceiling, a person swapped for another the floor, the face and not
the backdrop carries the identity; and its crop, determinism, training steps and provenance."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from paincontrol_lib import identity as ident
from paincontrol_lib.data.synthpain import generate

PAIN = {"AU04": 4.0, "AU06": 3.0, "AU07": 4.0, "AU09": 2.0, "AU10": 3.0, "AU43": 1.0}
SMILE = {"AU12": 4.0, "AU25": 2.0}


@pytest.fixture(scope="module")
def encoder():
    return ident.make_identity("synthface")


@pytest.fixture(scope="module")
def config():
    """The default dataset's configuration (params.yaml: synthesize), seed 0."""
    from paincontrol_lib.config import load_params

    return generate.SynthPainConfig.from_params(load_params()["synthesize"], 0)


def _frame(config, subject: str, aus: dict, jitter, noise_seed: int):
    """``subject`` wearing ``aus`` at the reference pose plus ``jitter`` degrees, with the
    dataset's sensor noise: a frame no method received."""
    from paincontrol_lib.data.synthpain.identity import sample_identity
    from paincontrol_lib.data.synthpain.render import default_renderer

    index = int(subject.lstrip("S"))
    renderer = default_renderer(config.image_size, config.face_fraction, config.supersample,
                                config.appearance)  # fmt: skip
    person = sample_identity(renderer.model, config.seed, index)
    pose = generate.reference_pose_jitter(config, index) + np.asarray(jitter, float)
    return renderer.render(person, aus, pose_jitter=pose, rng=np.random.default_rng(noise_seed))


@pytest.fixture(scope="module")
def people(config, encoder):
    """Five test people: the embeddings of their exact answer to a pain request (the truth
    rendered at the identity photo's pose, :func:`render_exact`) and of an unseen frame (a
    smile at another pose, with noise), from the renderer's true meshes."""
    subjects = generate.test_subjects(config)[:5]
    answers = [generate.render_exact(config, s, PAIN) for s in subjects]
    frames = [_frame(config, s, SMILE, (3.0, -2.0, 1.0), i) for i, s in enumerate(subjects)]
    embed = lambda renders: encoder.embed_many(  # noqa: E731
        [r.image for r in renders], [r.landmarks_2d for r in renders]
    )
    return subjects, embed(answers), embed(frames), answers, frames


def test_exact_answers_score_the_ceiling_and_swapped_people_the_floor(people):
    """As stage 04 places them: the floor is the mean similarity of different people's unseen
    frames, the ceiling the mean similarity of each exact answer to its person's unseen frame.
    Every exact answer is nearest its own person's frame and lies near the ceiling; against
    another person's frame (a person swapped for another) it lies near the floor, every swapped
    pair below every genuine one."""
    subjects, answers, frames, *_ = people
    n = len(subjects)
    others = ~np.eye(n, dtype=bool)
    floor = ident.cosine_similarity(frames, frames)[np.triu_indices(n, 1)].mean()
    sim = ident.cosine_similarity(answers, frames)
    ceiling = np.diag(sim).mean()
    assert ceiling - floor > 0.5  # dlib's whole usable range on SynthPain was 0.055
    normalised = (sim - floor) / (ceiling - floor)
    genuine, swapped = np.diag(normalised), normalised[others]
    assert (genuine > 0.8).all()
    assert abs(swapped.mean()) < 0.15 and (swapped < 0.5).all()
    assert swapped.max() < genuine.min()
    assert list(ident.nearest_identity(answers, frames, subjects)) == subjects


def _face_on(face, backdrop) -> np.ndarray:
    """``face``'s pixels inside its face oval (grown by one pixel) pasted onto ``backdrop``'s
    image: the same face in front of another person's background, hair, ears and clothes."""
    import cv2

    from paincontrol_lib import facemesh

    oval = face.landmarks_2d[facemesh.boundary_loops()["face_oval"]]
    mask = np.zeros(face.image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round((oval - 0.5) * 16).astype(np.int32)], 1, cv2.LINE_AA, shift=4)
    mask = cv2.dilate(mask, np.ones((3, 3), np.uint8)).astype(bool)[..., None]
    return np.where(mask, face.image, backdrop.image)


def test_the_conditioning_encoder_also_tells_the_people_apart(people):
    """The second encoder, the one the model is conditioned on (trained the same way on people
    of another seed): every exact answer nearest its own person's unseen frame, genuine pairs
    above swapped ones. It is what the identity tokens carry, so it must separate people too."""
    subjects, *_, answers, frames = people
    conditioning = ident.make_identity("synthface-conditioning")
    embed = lambda renders: conditioning.embed_many(  # noqa: E731
        [r.image for r in renders], [r.landmarks_2d for r in renders]
    )
    a, f = embed(answers), embed(frames)
    sim = ident.cosine_similarity(a, f)
    n = len(subjects)
    assert list(ident.nearest_identity(a, f, subjects)) == subjects
    assert sim[~np.eye(n, dtype=bool)].max() < np.diag(sim).min()


def test_the_encoder_reads_the_face_not_the_backdrop(people, encoder):
    """The known-answer probe: each person's face pasted onto the next person's frame keeps
    its own identity (nearest its own unseen frame, and nearly the embedding of the unpasted
    face), although everything around it is the other person's."""
    subjects, answers, frames, renders, _ = people
    n = len(subjects)
    pasted = [_face_on(renders[i], renders[(i + 1) % n]) for i in range(n)]
    probes = encoder.embed_many(pasted, [r.landmarks_2d for r in renders])
    assert (pasted[0] != renders[0].image).any()  # the backdrop really changed
    assert list(ident.nearest_identity(probes, frames, subjects)) == subjects
    assert (np.diag(ident.cosine_similarity(probes, answers)) > 0.9).all()


def test_crops_from_mediapipe_meshes_match_crops_from_the_true_meshes(people, encoder):
    """Training cropped with the renderer's meshes, inference crops with MediaPipe's: the same
    face gives nearly the same embedding either way (about as close as two frames of one
    person are), and the same person's."""
    from paincontrol_lib.landmarks.mesher import FaceMesher

    _, answers, _, renders, _ = people
    with FaceMesher() as mesher:
        found = [mesher(r.image) for r in renders]
    assert all(f.detected for f in found)
    meshed = encoder.embed_many([r.image for r in renders], [f.landmarks for f in found])
    assert (np.diag(ident.cosine_similarity(meshed, answers)) > 0.8).all()
    subjects = people[0]
    assert list(ident.nearest_identity(meshed, answers, subjects)) == subjects


def test_the_crop_greys_everything_outside_the_face(people):
    _, _, _, renders, _ = people
    crop = ident.face_crop(renders[0].image, renders[0].landmarks_2d)
    assert crop.shape == (ident.FACE_CROP, ident.FACE_CROP, 3) and crop.dtype == np.uint8
    corners = crop[[0, 0, -1, -1], [0, -1, 0, -1]]
    np.testing.assert_array_equal(corners, np.full((4, 3), ident.MASK_GREY))
    centre = crop[ident.FACE_CROP // 2 - 4 : ident.FACE_CROP // 2 + 4]
    assert np.abs(centre.astype(int) - ident.MASK_GREY).mean() > 20  # skin, not grey


def test_embeddings_are_deterministic_unit_vectors(people, encoder):
    _, answers, _, renders, _ = people
    again = encoder.embed(renders[0].image.copy(), renders[0].landmarks_2d.copy())
    assert again.shape == (encoder.dim,) and again.dtype == np.float32
    np.testing.assert_allclose(again, answers[0], atol=1e-5)  # one face alone or in a batch
    np.testing.assert_array_equal(encoder.embed(renders[0].image, renders[0].landmarks_2d), again)
    np.testing.assert_allclose(np.linalg.norm(answers, axis=1), 1.0, atol=1e-5)
    assert encoder.name.startswith("synthface-")


def test_missing_weights_say_which_make_target_rebuilds_them(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        ident.make_identity("synthface", model_dir=tmp_path)
    message = str(err.value)
    assert "make identity-encoder" in message and str(tmp_path) in message
    assert "encoder.safetensors" in message


def test_shipped_weights_are_small_and_say_how_they_were_made():
    from paincontrol_lib.model.identity_encoder import USED_SEEDS

    folder = ident.ENCODER_DIR
    assert (folder / ident.ENCODER_WEIGHTS).stat().st_size < 5 * 2**20
    record = json.loads((folder / "PROVENANCE.json").read_text())
    assert record["seed"] not in USED_SEEDS and record["n_identities"] >= 1000
    assert record["command"].startswith("python -m paincontrol_lib.model.identity_encoder")
    for key in ("steps", "code_revision", "code_digest", "data_hash", "minutes", "monitor"):
        assert record[key] is not None, key
    assert record["monitor"][-1]["step"] == record["steps"]


def test_training_runs_by_steps_and_repeats_exactly():
    """Five people (two never trained on), a few renders, two steps: the loop runs, and the
    same recipe gives the same weights (seeded batches, augmentation and initialisation, one
    torch thread)."""
    from paincontrol_lib.model import identity_encoder as trainer

    recipe = trainer.Recipe(n_identities=5, n_monitor=2, frames=2, steps=2, batch_size=4,
                            warmup_steps=1, monitor_every=2)  # fmt: skip
    people = [trainer._render_person((i, replace(recipe, image_size=64))) for i in range(5)]
    data = {
        "images": np.concatenate([p[0] for p in people]),
        "landmarks": np.concatenate([p[1] for p in people]),
        "person": np.repeat(np.arange(5), 2),
    }
    first, record = trainer.train(recipe, data)
    second, _ = trainer.train(recipe, data)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert (a == b).all(), name
    assert len(record["monitor"]) == 1 and record["monitor"][0]["n_people"] == 2
    assert np.isfinite(record["final_loss"])


def test_the_recipe_refuses_seeds_whose_people_other_stages_use():
    from paincontrol_lib.model.identity_encoder import USED_SEEDS, Recipe

    for seed in USED_SEEDS:
        with pytest.raises(ValueError, match="other stages use"):
            Recipe(seed=seed)


def test_verification_on_known_embeddings():
    embeddings = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    result = ident.verification(embeddings, np.array(["a", "a", "b", "b"]))
    assert result["verification_auc"] == 1.0
    assert result["n_genuine_pairs"] == 2 and result["n_impostor_pairs"] == 4
    assert result["genuine_mean"] > 0.98 and result["impostor_mean"] < 0.2
    swapped = ident.verification(embeddings, np.array(["a", "b", "a", "b"]))
    assert swapped["verification_auc"] < 0.5


def test_normalised_identity_and_known_answers_from_scores():
    """0 at the floor, 1 at the ceiling; the known answers summarised once per request."""
    from paincontrol_lib.evaluate import identity_known_answers, normalise_identity

    requested = {f"requested_{au}": [1.0, 1.0, 2.0] for au in PAIN}
    scores = pd.DataFrame({
        "target": ["S1", "S1", "S2"], "source": ["S2", "S2", "S1"], **requested,
        "identity_similarity": [0.2, 0.8, 0.5],
        "exact_identity_similarity": [0.8, 0.8, 0.8],
        "swapped_identity_similarity": [0.2, 0.2, 0.2],
        "exact_identity_top1_gallery": [1.0, 1.0, 1.0],
    })  # fmt: skip
    bounds = {
        "identity_floor": {"mean": 0.2},
        "identity_ceiling": {"mean": 0.8},
        "identity_floor_dlib": {"mean": 0.9},
        "identity_ceiling_dlib": {"mean": 0.9},
    }
    out = normalise_identity(scores, bounds)
    np.testing.assert_allclose(out["identity_normalised"], [0.0, 1.0, 0.5])
    assert "identity_normalised_dlib" not in out  # ceiling == floor: no scale to place it on
    known = identity_known_answers(out, n_boot=50)
    assert known["n_requests"] == 2
    assert known["exact_identity_normalised"]["mean"] == pytest.approx(1.0)
    assert known["swapped_identity_normalised"]["mean"] == pytest.approx(0.0)
    assert known["exact_identity_top1_gallery"]["mean"] == 1.0


@pytest.fixture(scope="module")
def tiny_landmarks(tmp_path_factory, tiny_synthpain):
    from paincontrol_lib.data.sources import load_records
    from paincontrol_lib.landmarks.batch import build_landmark_table

    data_dir, _ = tiny_synthpain
    out = tmp_path_factory.mktemp("lm") / "landmarks"
    records = load_records("synthpain", data_dir)
    table = build_landmark_table(records, data_dir, out, 64, workers=1, progress=False)[0]
    return data_dir, table


def test_stage_04_scores_the_exact_answer_at_the_ceiling_and_a_swapped_person_at_the_floor(
    tiny_landmarks, tmp_path
):
    """Stage 04's scorer on known outputs: for each test person as the target, its own exact
    answer (``truth``) and the other test person's exact answer to the same request
    (``swapped``, the source's face where the target's should be)."""
    from paincontrol_lib.evaluate import (
        ExactAnswers,
        identity_bounds,
        identity_ceiling,
        normalise_identity,
        score_outputs,
    )
    from paincontrol_lib.io import save_image

    data_dir, table = tiny_landmarks
    exact = ExactAnswers(data_dir, table)
    target, source = sorted(table.loc[table["split"] == "test", "subject"].unique())[:2]
    aligned = table.set_index("subject")["aligned"]
    cases = {"truth": (target, target), "swapped": (target, source),
             "truth_b": (source, source), "swapped_b": (source, target)}  # fmt: skip
    records = []
    for method, (to, face) in cases.items():
        save_image(tmp_path / f"{method}.png", exact(face, PAIN, 64)[0])
        records.append({
            "method": method, "mode": "explicit", "source": source if to == target else target,
            "target": to, "frame": None, "source_image": None, "aus": json.dumps(PAIN),
            "path": f"{method}.png", "target_aligned": aligned[to].iloc[0],
        })  # fmt: skip
    manifest = pd.DataFrame(records)
    scores = score_outputs(manifest, tmp_path, table, exact=exact, seed=0)
    photo = identity_ceiling(manifest, table, 64, seed=0)
    bounds = identity_bounds(scores, photo, table, manifest, seed=0, n_boot=50)
    assert bounds["identity_ceiling"]["answer"] == "exact_answers"
    assert bounds["identity_floor"]["n_pairs"] == 1
    scores = normalise_identity(scores, bounds).set_index("method")
    truth, swapped = scores.loc[["truth", "truth_b"]], scores.loc[["swapped", "swapped_b"]]
    assert (truth["identity_normalised"] > 0.7).all()  # the ceiling is their mean
    assert (truth["identity_top1_gallery"] == 1).all() and (truth["target_over_source"] == 1).all()
    assert (swapped["identity_normalised"].abs() < 0.4).all()
    assert (swapped["identity_top1_gallery"] == 0).all()
    assert (swapped["target_over_source"] == 0).all()
    np.testing.assert_allclose(scores["swapped_identity_normalised"].abs(), 0.0, atol=0.4)
