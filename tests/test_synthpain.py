import hashlib
from itertools import product

import numpy as np
import pytest

from paincontrol_lib import facemesh
from paincontrol_lib.aumesh import default_model
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
