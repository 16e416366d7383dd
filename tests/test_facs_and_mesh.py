import numpy as np
import pandas as pd
import pytest

from paincontrol_lib import facemesh
from paincontrol_lib.facs import au_name, pspi


def test_pspi_formula():
    aus = {"AU04": 3, "AU06": 2, "AU07": 4, "AU09": 1, "AU10": 5, "AU43": 1}
    assert pspi(aus) == 3 + 4 + 5 + 1
    assert pspi({}) == 0
    table = pd.DataFrame(
        {
            "AU04": [0, 5],
            "AU06": [0, 5],
            "AU07": [1, 0],
            "AU09": [0, 5],
            "AU10": [2, 0],
            "AU43": [0, 1],
        }
    )
    np.testing.assert_array_equal(pspi(table), [3, 16])


def test_au_name_normalises_codes():
    assert au_name(4) == au_name("au4") == au_name("AU04") == "AU04"
    with pytest.raises(ValueError):
        au_name("brow")


def test_tessellation_topology():
    tris = facemesh.triangles()
    assert tris.shape == (852, 3)
    assert tris.max() < facemesh.N_MESH_POINTS
    loops = facemesh.boundary_loops()
    assert {k: len(v) for k, v in loops.items()} == {
        "face_oval": 36,
        "inner_lips": 20,
        "right_eye": 16,
        "left_eye": 16,
    }
    # Every interior edge is shared by exactly two triangles with opposite directions.
    directed = {(a, b) for t in tris for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0]))}
    assert len(directed) == 3 * len(tris)


def test_similarity_fit_recovers_transform():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(50, 2))
    angle = 0.3
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = 2.5 * src @ rot.T + [3.0, -1.0]
    scale, r, t = facemesh.similarity_fit(src, dst)
    assert scale == pytest.approx(2.5)
    np.testing.assert_allclose(r, rot, atol=1e-9)
    np.testing.assert_allclose(t, [3.0, -1.0], atol=1e-9)


def test_measures_are_scale_and_rotation_free():
    from paincontrol_lib.au_to_mesh import default_model

    lm = default_model().neutral[:, :2] * [1, -1]
    angle = 0.4
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = 0.37 * lm @ rot.T + [10, 20]
    for name, value in facemesh.expression_features(lm).items():
        assert facemesh.expression_features(moved)[name] == pytest.approx(value), name
    assert facemesh.nme(lm, lm) == 0
    assert facemesh.nme(lm + [facemesh.inter_ocular(lm), 0], lm) == pytest.approx(1.0)
