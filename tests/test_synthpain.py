import hashlib
import json
from itertools import product

import numpy as np
import pytest

from paincontrol_lib import facemesh
from paincontrol_lib.au_to_mesh import default_model
from paincontrol_lib.data.synthpain import generate as sp
from paincontrol_lib.data.synthpain.expressions import SYNTHPAIN_AUS, sample_apex, sequence_frames
from paincontrol_lib.data.synthpain.identity import sample_identity
from paincontrol_lib.data.synthpain.render import default_renderer
from paincontrol_lib.facs import PAIN_AUS, pspi


@pytest.fixture(scope="module")
def renderer():
    return default_renderer(128, 0.6, 2)


@pytest.fixture(scope="module")
def person(renderer):
    return sample_identity(renderer.model, seed=0, index=3)


def _render(renderer, person, **aus):
    return renderer.render(person, aus)


def _digest(folder) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(folder).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_generation_is_deterministic_and_independent_of_workers(
    tmp_path, tiny_config, tiny_synthpain
):
    data_dir, _ = tiny_synthpain
    again = tmp_path / "again"
    sp.generate(tiny_config, again, workers=2)
    assert _digest(again) == _digest(data_dir)


def test_table_schema_and_splits(tiny_synthpain, tiny_config):
    data_dir, table = tiny_synthpain
    expected = {
        "subject",
        "sequence",
        "frame",
        "kind",
        "image",
        "split",
        "neutral_reference",
        "yaw",
        "pitch",
        "roll",
        "PSPI",
        "landmarks_2d",
        "landmarks_3d",
        *SYNTHPAIN_AUS,
    }
    assert expected <= set(table.columns)
    assert len(table) == tiny_config.n_identities * tiny_config.n_frames
    reread = sp.load_table(data_dir)
    assert reread.drop(columns=["landmarks_2d", "landmarks_3d"]).equals(
        table.drop(columns=["landmarks_2d", "landmarks_3d"])
    )
    assert sp.landmarks(reread).shape == (len(table), 478, 2)
    assert sp.landmarks(reread, "3d").shape == (len(table), 478, 3)
    np.testing.assert_array_equal(reread["PSPI"], pspi(reread))
    # Subject-level split: nobody is in both.
    per_subject = table.groupby("subject")["split"].nunique()
    assert (per_subject == 1).all()
    # tiny profile: 2 test people (final numbers), 1 validation person (choices), 2 train
    assert table.groupby("split")["subject"].nunique().to_dict() == {
        "test": 2,
        "train": 2,
        "val": 1,
    }
    assert table.groupby("subject")["neutral_reference"].sum().eq(1).all()
    assert (table.loc[table["neutral_reference"], list(SYNTHPAIN_AUS)] == 0).all().all()
    assert all((data_dir / p).is_file() for p in table["image"])


def test_missing_dataset_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="generate SynthPain"):
        sp.load_table(tmp_path)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="test_fraction"):
        sp.SynthPainConfig(test_fraction=1.0)
    with pytest.raises(ValueError, match="left to train on"):
        sp.SynthPainConfig(test_fraction=0.5, val_fraction=0.5)
    with pytest.raises(ValueError, match="n_identities"):
        sp.SynthPainConfig(n_identities=1)


def test_au4_lowers_the_brows_visibly(renderer, person):
    neutral, frown = _render(renderer, person), _render(renderer, person, AU04=5)
    drop = facemesh.brow_height(neutral.landmarks_2d) - facemesh.brow_height(frown.landmarks_2d)
    pixels = drop * facemesh.inter_ocular(neutral.landmarks_2d)
    assert pixels > 3.0, f"AU4=5 lowers the inner brows by only {pixels:.1f} px at 128 px"
    mild = _render(renderer, person, AU04=2)
    assert facemesh.brow_height(frown.landmarks_2d) < facemesh.brow_height(mild.landmarks_2d)


def test_au43_closes_the_eyes_and_hides_the_eyeballs(renderer, person):
    open_eyes, closed = _render(renderer, person), _render(renderer, person, AU43=1)
    assert facemesh.eye_opening(open_eyes.landmarks_2d) > 0.05
    assert facemesh.eye_opening(closed.landmarks_2d) < 0.01
    # Sclera (bright, unsaturated) pixels inside the eye region disappear.
    lm = open_eyes.landmarks_2d
    x0, y0 = lm[list(facemesh.RIGHT_EYE_PAIRS[3])].min(0).astype(int) - 2
    x1, y1 = lm[list(facemesh.RIGHT_EYE_PAIRS[3])].max(0).astype(int) + 2

    def sclera(img):
        patch = img[y0:y1, x0 - 6 : x1 + 6].astype(float)
        return ((patch.min(-1) > 170) & (np.ptp(patch, axis=-1) < 40)).sum()

    assert sclera(open_eyes.image) > 0
    assert sclera(closed.image) == 0


def test_au10_raises_the_upper_lip(renderer, person):
    nose_to_lip = lambda r: np.linalg.norm(r.landmarks_2d[2] - r.landmarks_2d[0])  # noqa: E731
    assert nose_to_lip(_render(renderer, person, AU10=5)) < 0.8 * nose_to_lip(
        _render(renderer, person)
    )


@pytest.mark.parametrize("combo", list(product([0, 5], repeat=4)))
def test_no_crossed_eyelids_or_lips(renderer, person, combo):
    au4, au6, au7, au9 = combo
    for au43 in (0, 1):
        r = _render(
            renderer, person, AU04=au4, AU06=au6, AU07=au7, AU09=au9, AU10=5, AU43=au43, AU26=5
        )
        lm = r.landmarks_2d
        pairs = facemesh.RIGHT_EYE_PAIRS + facemesh.LEFT_EYE_PAIRS + facemesh.INNER_LIP_PAIRS
        gaps = [lm[lo, 1] - lm[up, 1] for up, lo in pairs]  # image y grows downward
        assert min(gaps) >= -0.05, f"crossed pair at {combo}, AU43={au43}: {min(gaps):.2f} px"


def test_expression_sampling_covers_pspi_range_with_many_zeros():
    rng = np.random.default_rng(0)
    values = []
    for _ in range(400):
        _, apex = sample_apex(rng, pain_probability=0.5)
        values += [pspi(f) for f in sequence_frames(apex, 10)]
    values = np.array(values)
    assert 0.4 < (values == 0).mean() < 0.8
    assert values.max() >= 14 and values.min() == 0
    frames = sequence_frames({"AU04": 4, "AU43": 1}, 9)
    assert frames[0]["AU04"] == frames[-1]["AU04"] == 0 and frames[4]["AU04"] == 4
    assert frames[4]["AU43"] == 1 and frames[1]["AU43"] == 0
    assert set(PAIN_AUS) <= set(SYNTHPAIN_AUS)


def test_identities_differ(renderer):
    a, b = (sample_identity(renderer.model, 0, i) for i in (0, 1))
    assert not np.allclose(a.shape, b.shape)
    assert np.allclose(sample_identity(renderer.model, 0, 0).shape, a.shape)


def test_mediapipe_finds_and_tracks_tiny_synthpain(tiny_synthpain):
    from paincontrol_lib.data.synthpain.realism import realism_report
    from paincontrol_lib.landmarks.batch import detect_files

    data_dir, table = tiny_synthpain
    results = detect_files([data_dir / p for p in table["image"]], workers=1, progress=False)
    detected = np.array([r.detected for r in results])
    predicted = np.stack(
        [r.landmarks if r.detected else np.full((478, 3), np.nan) for r in results]
    )
    report = realism_report(table, detected, predicted)
    assert report["mediapipe_detection_rate"] >= 0.9
    assert report["mediapipe_nme"] <= 0.05
    assert report["template_nme"] > report["mediapipe_nme"]


def test_au_model_is_read_from_installed_pyfeat():
    model = default_model()
    assert model.neutral.shape == (478, 3) and model.facs_basis.shape == (20, 478, 3)
    with pytest.raises(KeyError, match="AU99"):
        model.facs_vector({"AU99": 1})


# -- SynthPain v2: the appearance of AUs ----------------------------------------------------------
@pytest.fixture(scope="module")
def geometry_only():
    return default_renderer(128, 0.6, 2, appearance=False)


@pytest.mark.parametrize("aus", [{"AU04": 5.0}, {"AU06": 3.0}, {"AU07": 5.0}, {"AU09": 4.0},
                                 {"AU10": 5.0}, {"AU12": 5.0}, {"AU43": 1.0}])  # fmt: skip
def test_appearance_switch_changes_pixels_only_inside_the_active_aus_region(
    renderer, geometry_only, person, aus
):
    """The AU's furrows and bulges change the skin inside its region and nowhere else."""
    (au,) = aus
    full = renderer.render(person, aus).image.astype(int)
    geometry = geometry_only.render(person, aus).image.astype(int)
    changed = np.abs(full - geometry).max(-1) > 0
    region = renderer.au_region(person, au, aus)
    assert changed.sum() > 30, f"{au} changed only {changed.sum()} pixels"
    assert not (changed & ~region).any(), f"{au} changed {(changed & ~region).sum()} px outside"
    assert region.mean() < 0.1  # a region, not the whole image


@pytest.mark.parametrize("aus", [{}, {"AU01": 3.0, "AU02": 2.0}, {"AU25": 2.0, "AU26": 4.0}])
def test_appearance_switch_changes_nothing_without_an_active_appearance_au(
    renderer, geometry_only, person, aus
):
    """A neutral frame (and AUs the renderer draws as geometry only) is the same image, bit for
    bit, with the switch on or off: the geometry-only SynthPain stays reproducible."""
    np.testing.assert_array_equal(
        renderer.render(person, aus).image, geometry_only.render(person, aus).image
    )


def test_appearance_grows_with_intensity_and_differs_between_people(renderer, geometry_only):
    """Stronger AUs draw deeper folds; the same AU looks different on two people (depth and
    furrow placement are the person's own)."""
    a, b = (sample_identity(renderer.model, seed=0, index=i) for i in (1, 2))
    signal = []
    for level in (1.0, 3.0, 5.0):
        full = renderer.render(a, {"AU04": level}).image.astype(int)
        signal.append(np.abs(full - geometry_only.render(a, {"AU04": level}).image).mean())
    assert signal[0] < signal[1] < signal[2]
    assert a.wrinkle_depth != b.wrinkle_depth
    maps_a, maps_b = renderer.skin_maps(a)["AU04"], renderer.skin_maps(b)["AU04"]
    assert not np.array_equal(maps_a.crease, maps_b.crease)


def test_config_switch_renders_geometry_only_and_old_folders_read_as_geometry_only(tmp_path):
    config = sp.SynthPainConfig(n_identities=2, n_sequences=1, frames_per_sequence=3,
                                test_fraction=0.5, appearance=False)  # fmt: skip
    sp.generate(config, tmp_path / "geo", workers=1)
    assert sp.load_config(tmp_path / "geo").appearance is False
    strong = {"AU04": 5.0, "AU43": 1.0}
    geometry = sp.render_exact(config, "S000", strong).image
    full = sp.render_exact(sp.SynthPainConfig(**{**config.__dict__, "appearance": True}), "S000",
                           strong).image  # fmt: skip
    assert not np.array_equal(geometry, full)
    path = tmp_path / "geo" / "config.json"
    raw = json.loads(path.read_text())
    del raw["appearance"]  # a folder written before the switch existed
    path.write_text(json.dumps(raw))
    assert sp.load_config(tmp_path / "geo").appearance is False


def test_exact_answers_are_drawn_at_the_identity_photos_pose_and_crop(tiny_synthpain, tmp_path):
    """The exact answer of a transfer is cropped with the target's identity-photo alignment,
    the frame every output is made in: with no expression it is the photo crop (up to sensor
    noise; cropped by its own landmarks, as before, it was 4.7-9.6 grey levels off), and a
    strong expression changes the face, not the framing (the backdrop beside the face stays
    where the photo has it)."""
    from paincontrol_lib.data.sources import load_records
    from paincontrol_lib.evaluate import ExactAnswers, identity_photo_crop
    from paincontrol_lib.landmarks.batch import build_landmark_table
    from paincontrol_lib.landmarks.table import load_landmark_table

    data_dir, _ = tiny_synthpain
    build_landmark_table(load_records("synthpain", data_dir), data_dir, tmp_path / "lm", 64,
                         workers=1, progress=False)  # fmt: skip
    table = load_landmark_table(tmp_path / "lm")
    exact = ExactAnswers(data_dir, table)
    subject = sorted(table["subject"].unique())[0]
    photo = identity_photo_crop(table, subject, 64).astype(float)
    neutral, _ = exact(subject, {}, 64)
    assert np.abs(neutral - photo).mean() < 2.5
    strong, mesh = exact(subject, {"AU04": 5.0, "AU07": 5.0, "AU43": 1.0}, 64)
    beside = (slice(None), slice(0, 6))  # backdrop left of the face
    assert np.abs(strong[beside].astype(float) - photo[beside]).mean() < 2.5
    assert mesh.shape == (478, 3) and 0 < mesh[:, :2].min() and mesh[:, :2].max() < 1
    region = exact.appearance_region(subject, {"AU04": 5.0, "AU07": 5.0, "AU43": 1.0}, 64)
    assert 0.01 < region.mean() < 0.3  # brows, lids: part of the face, not the crop
    assert not exact.appearance_region(subject, {"AU01": 5.0}, 64).any()
