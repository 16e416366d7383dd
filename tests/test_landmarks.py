"""MediaPipe meshing, alignment, control images and bad input, on real and synthetic faces."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from paincontrol_lib import facemesh
from paincontrol_lib.data.bundled import bundled_photos
from paincontrol_lib.landmarks.align import STABLE_POINTS, Similarity, align, canonical_landmarks
from paincontrol_lib.landmarks.batch import build_landmark_table, process_files
from paincontrol_lib.landmarks.control import CONTROL_COLOURS, render_control
from paincontrol_lib.landmarks.image import load_image
from paincontrol_lib.landmarks.mesher import FaceMesher
from paincontrol_lib.landmarks.table import landmark_metrics, load_landmark_table, stack_landmarks


@pytest.fixture(scope="module")
def mesher():
    with FaceMesher() as m:
        yield m


@pytest.mark.parametrize("photo", bundled_photos(), ids=lambda p: p.name)
def test_every_clearly_visible_face_in_bundled_photos_is_meshed(mesher, photo):
    faces = mesher.detect_all(load_image(photo.path))
    assert len(faces) >= photo.meshable
    assert len(faces) <= photo.faces  # no phantom faces
    for face in faces:
        assert face.landmarks.shape == (478, 3) and np.isfinite(face.landmarks).all()
        assert 0 < face.score <= 1


def test_single_face_call_matches_raw_mediapipe(mesher):
    from mediapipe.python.solutions import face_mesh

    image = load_image(bundled_photos()[0].path)
    with face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True) as raw:
        pts = raw.process(image).multi_face_landmarks[0].landmark
    ours = mesher(image)
    assert ours.detected
    np.testing.assert_allclose(ours.landmarks[:, 0], [p.x * 512 for p in pts], atol=1e-3)


def test_small_face_found_through_the_detector(mesher):
    """A face ~12 % of a large canvas: the direct mesh misses it, detector + crop finds it."""
    face = Image.open(bundled_photos()[1].path).convert("RGB").resize((150, 150))
    canvas = Image.new("RGB", (1200, 900), (90, 120, 90))
    canvas.paste(face, (900, 80))
    result = mesher(np.asarray(canvas))
    assert result.detected
    x0, y0, x1, y1 = result.box
    assert 880 < x0 < x1 < 1070 and 60 < y0 < y1 < 250


def test_alignment_round_trip_and_canonical_frame(tiny_synthpain):
    from paincontrol_lib.data.synthpain.generate import landmarks as gt_landmarks

    _, table = tiny_synthpain
    points = gt_landmarks(table)[0]
    aligned, transform = align(points)
    np.testing.assert_allclose(transform.inverse().apply(aligned), points, atol=1e-9)
    canonical = canonical_landmarks()
    stable = list(STABLE_POINTS)
    # A person's own face shape stays (a few % of the face), position, size and roll go.
    assert np.abs(aligned[stable, :2] - canonical[stable, :2]).mean() < 0.03
    assert canonical[:, :2].min() > 0 and canonical[:, :2].max() < 1
    # The canonical face moved by any similarity aligns back onto itself exactly.
    moved = Similarity(230.0, 0.4, 12.0, -7.0).apply(canonical)
    np.testing.assert_allclose(align(moved)[0], canonical, atol=1e-9)


def test_control_image_regions_left_right_and_closed_eyes():
    points = canonical_landmarks()[:, :2] * 128
    image = render_control(points, 128).astype(int)
    colours = CONTROL_COLOURS

    def where(colour):
        hit = (np.abs(image - colour).sum(-1) < 40).nonzero()
        return hit[1]  # x coordinates

    assert where(colours["right_brow"]).mean() < 64 < where(colours["left_brow"]).mean()
    assert where(colours["right_iris"]).size > 0 and where(colours["nose"]).size > 0
    assert colours["right_eye"] != colours["left_eye"]
    # Same mesh at another resolution from the same 128 px coordinates.
    assert render_control(points, 64, source_size=(128, 128)).shape == (64, 64, 3)
    # Closed eyes: collapse each upper lid onto the lower lid, no iris is drawn.
    closed = points.copy()
    for up, lo in facemesh.RIGHT_EYE_PAIRS + facemesh.LEFT_EYE_PAIRS:
        closed[up] = closed[lo]
    shut = render_control(closed, 128).astype(int)
    assert (np.abs(shut - colours["right_iris"]).sum(-1) < 40).sum() < 3
    with pytest.raises(ValueError, match="478"):
        render_control(points[:100], 128)


def _write_bad_inputs(folder):
    astronaut = load_image(bundled_photos()[0].path)
    files = {}
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    files["corrupt"] = folder / "corrupt.jpg"
    (folder / "empty.png").write_bytes(b"")
    files["empty"] = folder / "empty.png"
    Image.fromarray(astronaut).convert("L").save(folder / "grey.png")
    files["grey"] = folder / "grey.png"
    Image.fromarray(astronaut).convert("RGBA").save(folder / "rgba.png")
    files["rgba"] = folder / "rgba.png"
    Image.fromarray(astronaut).resize((16, 16)).save(folder / "tiny.png")
    files["tiny"] = folder / "tiny.png"
    Image.fromarray(astronaut).resize((3000, 3000)).save(folder / "large.jpg", quality=80)
    files["large"] = folder / "large.jpg"
    Image.new("RGB", (300, 200), (30, 90, 200)).save(folder / "noface.png")
    files["noface"] = folder / "noface.png"
    files["missing"] = folder / "missing.png"
    files["good"] = bundled_photos()[0].path
    return files


def test_bad_inputs_are_flagged_and_the_batch_is_kept(tmp_path):
    files = _write_bad_inputs(tmp_path)
    names = list(files)
    results = process_files(
        [files[n] for n in names], keys=names, out_dir=tmp_path / "out", workers=2, progress=False
    )
    by_name = dict(zip(names, results, strict=True))
    for bad in ("corrupt", "empty", "missing"):
        assert (
            not by_name[bad].detected
            and "readable" in by_name[bad].error
            or "No such" in by_name[bad].error
        )
    assert "too small" in by_name["tiny"].error
    assert by_name["noface"].error == "no face found"
    for good in ("grey", "rgba", "large", "good"):
        assert by_name[good].detected, good
        assert (tmp_path / "out" / "control" / f"{good}.png").is_file()
    large = by_name["large"].landmarks
    assert large[:, :2].max() > 1500  # landmarks in the original 3000 px frame
    np.testing.assert_allclose(large[:, :2] / 3000 * 512, by_name["good"].landmarks[:, :2], atol=6)


def test_landmark_table_and_metrics(tmp_path, tiny_synthpain, monkeypatch):
    from paincontrol_lib.data.sources import load_records

    data_dir, _ = tiny_synthpain
    records = load_records("synthpain", data_dir)
    table, seconds = build_landmark_table(
        records, data_dir, tmp_path / "lm", 64, workers=1, progress=False
    )
    assert len(table) == len(records) and table.detected.all()
    reread = load_landmark_table(tmp_path / "lm")
    assert stack_landmarks(reread).shape == (len(records), 478, 3)
    assert Image.open(tmp_path / "lm" / reread.control[0]).size == (64, 64)
    assert reread["image"].map(lambda p: Path(p).is_file()).all()
    # Built from the data's parent folder with relative paths, as `dvc repro` does, the table
    # still reads from any other working directory (before the fix it stored image paths
    # relative to the first one: FileNotFoundError elsewhere).
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with monkeypatch.context() as m:
        m.chdir(data_dir.parent)
        relative = load_records("synthpain", data_dir.name)
        build_landmark_table(relative, data_dir.name, "lm_rel", 64, workers=1, progress=False)
        stored = pd.read_parquet(Path("lm_rel") / "landmarks.parquet")
        assert not stored["image"].map(lambda p: Path(p).is_absolute()).any()
        m.chdir(elsewhere)
        moved = load_landmark_table(data_dir.parent / "lm_rel")
        assert moved["image"].map(lambda p: Path(p).is_file()).all()
    metrics = landmark_metrics(table, seconds, raw_rate=100.0)
    assert metrics["detection_rate"] == 1.0 and metrics["nme"] < 0.05
    assert metrics["throughput_ratio_vs_mediapipe"] == pytest.approx(
        metrics["images_per_second"] / 100
    )


def test_workers_from_an_unguarded_script_fail_fast(tmp_path):
    """Before the fix, ``run_batch(workers=2)`` called at a script's top level (no
    ``__main__`` guard) hung for ever: each spawned worker re-ran the script, failed, and the
    pool replaced it."""
    import subprocess
    import sys

    paths = [str(p.path) for p in bundled_photos()][:2] * 8
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from paincontrol_lib.landmarks.batch import process_files\n"
        f"process_files({paths!r}, workers=2, progress=False)\n"
        "print('done')\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode != 0 and "done" not in done.stdout
    assert '`if __name__ == "__main__":`' in done.stderr.splitlines()[-1], done.stderr[-1500:]
    guarded = tmp_path / "guarded.py"
    guarded.write_text(
        "from paincontrol_lib.landmarks.batch import process_files\n"
        "if __name__ == '__main__':\n"
        f"    print(sum(r.detected for r in process_files({paths!r}, workers=2, "
        "progress=False)))\n"
    )
    ok = subprocess.run([sys.executable, str(guarded)], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0 and int(ok.stdout.split()[-1]) >= 8, ok.stderr[-1500:]


def test_committed_figures_show_only_photographs_whose_licence_permits_it(tmp_path):
    """Only the public-domain astronaut is drawn (the committed figure is a copy of it); every
    other bundled photograph is counted in the table, never shown, and each is listed with its
    terms in THIRD_PARTY_NOTICES.md."""
    from types import SimpleNamespace

    import matplotlib

    matplotlib.use("Agg")
    from paincontrol_lib.config import REPO_ROOT
    from paincontrol_lib.stages.landmarks import real_photos_figure

    photos = bundled_photos()
    assert [p.name for p in photos if p.redistributable] == ["astronaut"]
    fig, table = real_photos_figure(SimpleNamespace(photos=[(p, []) for p in photos]), tmp_path)
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(drawn) == 1 and drawn[0].get_title().startswith("astronaut")
    assert len(table) == len(photos) and table["shown"].sum() == 1
    notices = (REPO_ROOT / "THIRD_PARTY_NOTICES.md").read_text()
    missing = [p.path.name for p in photos if p.path.name not in notices]
    missing = [m for m in missing if m != "free-mountain-vector-01.jpg"]  # no person in it
    assert not missing, f"photographs without their terms in THIRD_PARTY_NOTICES.md: {missing}"
