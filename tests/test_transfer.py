"""Retargeting (delta, au, explicit), generation methods, sequences and the transfer CLI."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from paincontrol_lib import facemesh
from paincontrol_lib import retarget as rt
from paincontrol_lib.au_basis import estimate_aus
from paincontrol_lib.cli import main as cli
from paincontrol_lib.evaluate import MOTION_FEATURES, motion_following, motion_summary
from paincontrol_lib.facs import PAIN_AUS
from paincontrol_lib.landmarks.align import align, canonical_landmarks
from paincontrol_lib.landmarks.face import Face
from paincontrol_lib.model.sampler import SamplerConfig
from paincontrol_lib.transfer import Transfer
from paincontrol_lib.warp import warp_to

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "pretrained" / "tiny-synthpain"


def _features(aligned):
    return {k: float(v[0]) for k, v in facemesh.expression_features(aligned[None]).items()}


@pytest.fixture(scope="module")
def neutral():
    """A neutral mesh in some image frame (scaled, shifted, rotated canonical face)."""
    c, s = np.cos(0.2), np.sin(0.2)
    mesh = canonical_landmarks() * 300
    mesh[:, :2] = mesh[:, :2] @ np.array([[c, -s], [s, c]]).T + [40, 25]
    return mesh


def test_explicit_au43_closes_the_eyes_and_au4_lowers_the_brows(neutral):
    before = _features(align(neutral)[0])
    closed = _features(rt.retarget("explicit", neutral, aus="AU43=1").aligned)
    lowered = _features(rt.retarget("explicit", neutral, aus={"AU04": 4}).aligned)
    assert closed["eye_opening"] < 0.1 * before["eye_opening"]
    assert lowered["brow_height"] < 0.7 * before["brow_height"]
    assert abs(lowered["eye_opening"] - before["eye_opening"]) < 0.4 * before["eye_opening"]
    both = rt.retarget("explicit", neutral, aus="AU4=4,AU43=1", size=48)
    assert both.control.shape == (48, 48, 3) and both.pspi == 5
    # no lid or lip crossed through its partner
    pairs = facemesh.RIGHT_EYE_PAIRS + facemesh.LEFT_EYE_PAIRS + facemesh.INNER_LIP_PAIRS
    assert all(both.aligned[u, 1] <= both.aligned[v, 1] for u, v in pairs)  # y down


def test_pspi_levels_and_au_text():
    for level in (0, 3, 7.5, 8, 13, 16):
        assert rt.aus_for_pspi(level)["AU43"] == (1.0 if level >= 8 else 0.0)
        assert rt.pspi(rt.aus_for_pspi(level)) == pytest.approx(level)
    assert rt.parse_aus("AU4=3, au043=1") == {"AU04": 3.0, "AU43": 1.0}
    for bad, message in (("AU4=6", "must lie"), ("AU43=2", "must lie"), ("brows=3", "expected"),
                         ("", "no AUs")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            rt.parse_aus(bad)
    with pytest.raises(ValueError, match="PSPI level"):
        rt.aus_for_pspi(17)
    with pytest.raises(ValueError, match="not in the AU->mesh model"):
        rt.au_displacement({"AU99": 1})


def test_delta_moves_the_source_expression_onto_a_differently_sized_target(neutral):
    source = rt.retarget("explicit", neutral, aus="AU4=4,AU43=1").aligned * 500 + 7  # any frame
    target = neutral * 0.5 + 100  # another face size and place
    unchanged = rt.retarget("delta", target, source=neutral, source_neutral=neutral)
    np.testing.assert_allclose(unchanged.aligned, align(target)[0], atol=1e-6)
    moved = _features(rt.retarget("delta", target, source=source, source_neutral=neutral).aligned)
    wanted = _features(rt.retarget("explicit", target, aus="AU4=4,AU43=1").aligned)
    for key in ("eye_opening", "brow_height"):
        assert moved[key] == pytest.approx(wanted[key], abs=0.01)
    with pytest.raises(ValueError, match="needs the source"):
        rt.retarget("delta", target, source=source)
    with pytest.raises(ValueError, match="mode"):
        rt.retarget("mirror", target)
    with pytest.raises(ValueError, match="finite"):
        rt.retarget("explicit", target[:100], aus="AU4=1")


def test_au_mode_estimates_the_pain_aus_of_the_source(neutral):
    asked = {"AU04": 3.0, "AU07": 2.0, "AU10": 2.0, "AU43": 1.0}
    source = rt.retarget("explicit", neutral, aus=asked).aligned * 200
    estimated = estimate_aus(source, neutral)
    assert estimated["AU04"] == pytest.approx(3.0, abs=0.6)
    assert estimated["AU10"] == pytest.approx(2.0, abs=0.6)
    assert estimated["AU43"] > 0.5
    assert max(v for k, v in estimated.items() if k not in asked) < 1.0  # few spurious AUs
    result = rt.retarget("au", neutral * 2, source=source, source_neutral=neutral)
    assert result.aus == estimated and _features(result.aligned)["eye_opening"] < 0.02


def _face(mesh, size=64):
    """A synthetic face image (flat grey ellipse with dark eyes) and its mesh, canonical crop."""
    aligned = align(mesh)[0]
    image = np.full((size, size, 3), 200, np.uint8)
    yy, xx = np.mgrid[0:size, 0:size] / size
    image[((xx - 0.5) / 0.3) ** 2 + ((yy - 0.5) / 0.35) ** 2 < 1] = (220, 170, 140)
    for eye in (facemesh.RIGHT_IRIS_CENTER, facemesh.LEFT_IRIS_CENTER):
        x, y = aligned[eye, :2]
        image[(xx - x) ** 2 + (yy - y) ** 2 < 0.03**2] = 20
    return Face(image, aligned * size, aligned, align(aligned * size)[1], "synthetic")


def test_warp_is_exact_at_rest_and_moves_the_eyes(neutral):
    face = _face(neutral)
    crop = face.crop(64)
    rest = warp_to(crop, face.aligned * 64, face.aligned * 64)
    assert np.abs(rest.astype(int) - crop).mean() < 1.5
    closed = rt.retarget("explicit", face.landmarks, aus="AU43=1")
    warped = warp_to(crop, face.aligned * 64, closed.aligned * 64)
    dark = lambda im: (im.mean(-1) < 60).sum()  # noqa: E731
    assert dark(warped) < 0.5 * dark(crop)  # the dark irises are squeezed shut


def test_warp_matches_skimage_piecewise_affine(neutral):
    """The remap-based warp is the same map as skimage's PiecewiseAffineTransform."""
    from skimage.transform import PiecewiseAffineTransform, warp

    face = _face(neutral)
    crop = face.crop(64)
    moved = rt.retarget("explicit", face.landmarks, aus="AU4=4,AU43=1,AU10=3").aligned * 64
    ours = warp_to(crop, face.aligned * 64, moved)
    frame = np.array([[0, 0], [63, 0], [0, 63], [63, 63], [32, 0], [32, 63], [0, 32], [63, 32]])
    points = slice(0, facemesh.N_MESH_POINTS)
    tform = PiecewiseAffineTransform.from_estimate(
        np.vstack([moved[points, :2], frame]), np.vstack([face.aligned[points, :2] * 64, frame])
    )
    reference = warp(crop, tform, order=1, mode="edge", preserve_range=True).round()
    difference = np.abs(ours.astype(int) - reference.astype(int))
    assert np.abs(ours.astype(int) - crop).mean() > 0.5  # the warp moved something
    assert difference.mean() < 0.5 and np.percentile(difference, 99) <= 3


def _sequences(shown: dict) -> pd.DataFrame:
    """Scores of one delta sequence per method: a requested expression ramp (eyes closing, brows
    lowering, mouth opening) and each method's outputs' features."""
    asked = np.column_stack([np.linspace(0.3, 0.1, 5), np.linspace(0.0, 0.2, 5),
                             np.linspace(0.5, 0.4, 5)])  # fmt: skip
    rows = []
    for method, features in shown.items():
        for t in range(5):
            row = {"method": method, "mode": "delta", "source": "S1", "target": "S2", "frame": t}
            for k, name in enumerate(MOTION_FEATURES):
                row[f"requested_feature_{name}"] = asked[t, k]
                row[f"feature_{name}"] = features(asked)[t, k]
            rows.append(row)
    return pd.DataFrame(rows)


def test_motion_following_rewards_following_the_source_not_standing_still():
    """Known answers: the exact expression scores 1, a scaled copy too (amplitude is the PSPI
    slope's business), standing still 0, the motion reversed -1, flicker about 0; a sequence with
    a frame without a face is left out."""
    rng = np.random.default_rng(0)
    shown = {
        "exact": lambda a: a,
        "weaker": lambda a: a[0] + 0.5 * (a - a[0]),
        "still": lambda a: np.repeat(a[:1], 5, axis=0),
        "reversed": lambda a: a[::-1],
        "flicker": lambda a: a[:1] + rng.normal(0, 0.05, a.shape),
        "no_face": lambda a: np.where(np.arange(5)[:, None] == 2, np.nan, a),
    }
    found = motion_following(_sequences(shown)).set_index("method")["motion_following"]
    assert found["exact"] == pytest.approx(1) and found["weaker"] == pytest.approx(1)
    assert found["still"] == 0 and found["reversed"] == pytest.approx(-1)
    assert abs(found["flicker"]) < 0.7 and "no_face" not in found
    # without exact answers (real data) no ceiling; a method whose every sequence lost a face
    # is reported with none, not dropped
    summary = motion_summary(_sequences(shown), n_boot=50, seed=0)
    assert "exact_answer" not in summary and summary["no_face"]["n_sequences"] == 0
    assert summary["exact"]["mean"] == pytest.approx(1) and summary["exact"]["n_sequences"] == 1


def test_animation_plays_each_source_frame_with_every_method_labelled(tmp_path):
    from types import SimpleNamespace

    from PIL import Image

    from paincontrol_lib.stages.transfer import ANIMATED, ANIMATION, animation

    frames = np.random.default_rng(0).integers(0, 255, (4, 16, 16, 3), dtype=np.uint8)
    panel = {"source_crops": frames, "pspi": [0.0, 3.0, 8.0, 2.0], "target": "S2",
             "outputs": {m: frames[::-1] for m in ANIMATED}, "source_aus": [{}] * 4}  # fmt: skip
    result = SimpleNamespace(panels={"sequences": [panel]},
                             metrics={"labels": {m: m for m in ANIMATED}})  # fmt: skip
    shown = animation(result, {"source": "folder"}, tmp_path, tmp_path)
    gif = Image.open(tmp_path / ANIMATION)
    assert gif.n_frames == 4 and gif.info["loop"] == 0 and shown.format == "gif"
    assert gif.size == (16 * 2 * (1 + len(ANIMATED)), 16 * 2 + 44)  # no exact answers here


class _FixedIdentity:
    def __init__(self):
        self.calls = 0

    def embed(self, image, landmarks):
        self.calls += 1
        return np.linspace(-0.1, 0.1, 128).astype(np.float32)


def test_every_method_through_one_interface(neutral):
    from paincontrol_lib.model.presets import PainControlModel

    # A trained model: a fresh ControlNet's zero convolutions would ignore the control image.
    model = PainControlModel.from_pretrained(SHIPPED)
    identity = _FixedIdentity()
    engine = Transfer(model, SamplerConfig(steps=2, start="noise", identity_scale=1.0),
                      identity=identity)  # fmt: skip
    face = _face(neutral, 64)
    levels = [rt.retarget("explicit", face.landmarks, aus=rt.aus_for_pspi(p), size=64)
              for p in (0, 8, 8)]  # fmt: skip
    out = {m: engine.generate(m, face, levels, seed=3, shared_noise=True) for m in
           ("paincontrol", "warp", "no_identity", "no_landmarks")}  # fmt: skip
    for images in out.values():
        assert images.shape == (3, 64, 64, 3) and images.dtype == np.uint8
    # shared noise: the same expression gives the same image; identity and control matter
    np.testing.assert_array_equal(out["paincontrol"][1], out["paincontrol"][2])
    assert not np.array_equal(out["paincontrol"], out["no_identity"])
    assert not np.array_equal(out["paincontrol"], out["no_landmarks"])
    assert identity.calls == 1  # the target's embedding is computed once
    fresh = engine.generate("paincontrol", face, levels, seed=3, shared_noise=False)
    assert not np.array_equal(fresh[1], fresh[2])
    with pytest.raises(ValueError, match="method"):
        engine.generate("fomm", face, levels)
    with pytest.raises(ValueError, match="needs a PainControl checkpoint"):
        Transfer(None, size=64).generate("paincontrol", face, levels)


def test_sampling_from_the_targets_photo_keeps_its_appearance(neutral):
    """Starting from the target's noised neutral crop keeps the sample near that photo, while
    the expression still follows the control; strength 0 is the warp itself; PainControl itself
    starts from noise, whatever the variant's strength."""
    from paincontrol_lib.model.presets import PainControlModel

    model = PainControlModel.from_pretrained(SHIPPED)
    face = _face(neutral, 64)
    levels = [rt.retarget("explicit", face.landmarks, aus=rt.aus_for_pspi(p), size=64)
              for p in (0, 12)]  # fmt: skip
    photo = face.crop(64).astype(float)

    def run(method, strength):
        variant = SamplerConfig(steps=6, start="warped_target", start_strength=max(strength, 0.1))
        sampler = SamplerConfig(steps=6, start="warped_target", start_strength=strength)
        engine = Transfer(model, sampler, identity=_FixedIdentity(), warp_start=variant)
        return engine.generate(method, face, levels, seed=0, shared_noise=True)

    from_photo, from_noise = run("paincontrol", 0.33), run("paincontrol", 1.0)
    assert np.abs(from_photo - photo).mean() < 0.5 * np.abs(from_noise - photo).mean()
    assert not np.array_equal(from_photo[0], from_photo[1]), "the expression must still change"
    np.testing.assert_array_equal(run("paincontrol", 0.0), run("warp", 0.0))
    assert not np.array_equal(run("paincontrol_warp_start", 0.33), run("paincontrol", 1.0))
    with pytest.raises(ValueError, match="start_strength"):
        SamplerConfig(start_strength=-0.1)


def test_the_label_of_every_method_with_a_start_image_carries_its_steps_run():
    """Say what runs: a start image's label names the start and the steps run; PainControl from
    noise is the paper's method and is called that."""
    from paincontrol_lib.transfer import METHODS, MODEL_METHODS

    for strength, steps in ((0.17, 1), (0.5, 3), (0.83, 5)):
        variant = SamplerConfig(steps=6, start="warped_target", start_strength=strength)
        for sampler in (SamplerConfig(), variant):
            guided = replace(sampler, au_guidance=40.0, au_guidance_last=0.5)
            engine = Transfer(None, sampler, size=64, warp_start=variant, au_guided=guided)
            for method in METHODS:
                used = engine.sampler_for(method)
                label = engine.label(method)
                if method in MODEL_METHODS and used.from_start_image:
                    assert f"warp start, {used.steps_run} of 6 steps" in label, (method, label)
                else:
                    assert "start" not in label, (method, label)
                if used.au_guided_steps:
                    guided_steps = f"AU guidance ({used.au_guided_steps} of {used.steps_run} steps)"
                    assert guided_steps in label, (method, label)
                elif not used.from_start_image:
                    assert "steps" not in label, (method, label)
            assert engine.label("paincontrol_warp_start") == (
                f"PainControl, warp start, {steps} of 6 steps"
            )
    assert Transfer(None, size=64).label("paincontrol") == "PainControl"
    assert SamplerConfig(start="warped_target", start_strength=0).steps_run == 0
    with pytest.raises(ValueError, match="warp-start variant"):
        Transfer(None, size=64, warp_start=SamplerConfig(start="warped_target", start_strength=0))
    with pytest.raises(ValueError, match="AU-guided method"):  # guidance and nothing else
        Transfer(None, size=64, au_guided=SamplerConfig(au_guidance=40.0, identity_scale=3.0))
    with pytest.raises(ValueError, match="needs a sampler with AU guidance"):
        Transfer(None, size=64).label("paincontrol_au_guided")


def test_each_ablation_differs_from_paincontrol_in_exactly_one_factor(neutral, monkeypatch):
    """PainControl and its ablations (no_identity, no_landmarks, no_text) share one sampler and
    start (pure noise); each removes one input. The warp-start variant differs in its start."""
    import paincontrol_lib.model.sampling as sampling
    from paincontrol_lib.model.presets import PainControlModel

    calls, guides = {}, {}

    def fake_sample(*args, guide=None):
        guides[len(calls)] = guide
        return calls.setdefault(len(calls), args)

    monkeypatch.setattr(sampling, "sample", fake_sample)
    variant = SamplerConfig(start="warped_target", start_strength=0.33)
    guided = SamplerConfig(au_guidance=40.0, au_guidance_last=0.5)
    engine = Transfer(PainControlModel.from_pretrained(SHIPPED), SamplerConfig(),
                      identity=_FixedIdentity(), warp_start=variant, au_guided=guided)  # fmt: skip
    face = _face(neutral, 64)
    levels = [rt.retarget("explicit", face.landmarks, aus=rt.aus_for_pspi(12), size=64)]
    methods = ("paincontrol", "no_identity", "no_landmarks", "no_text", "paincontrol_warp_start",
               "paincontrol_au_guided")  # fmt: skip
    for method in methods:
        engine.generate(method, face, levels)
    got = dict(zip(methods, calls.values(), strict=True))
    # args: model, controls, identity, prompts, sampler, seeds, starts
    names = ("control", "identity", "prompt", "sampler", "seeds", "start")

    def factors(args):
        return dict(zip(names, args[1:], strict=True))

    def differing(a, b):
        out = []
        for name in names:
            x, y = factors(a)[name], factors(b)[name]
            if isinstance(x, SamplerConfig) or isinstance(x, list) or x is None or y is None:
                same = x == y if name != "start" else (x is None) == (y is None)
            else:
                same = np.array_equal(np.asarray(x), np.asarray(y))
            if not same:
                out.append(name)
        return out

    expected = {"no_identity": ["identity"], "no_landmarks": ["control"],
                "no_text": ["prompt"], "paincontrol_warp_start": ["sampler", "start"],
                "paincontrol_au_guided": ["sampler"]}  # fmt: skip
    for method, factor in expected.items():
        assert differing(got["paincontrol"], got[method]) == factor, method
    assert got["paincontrol"][6] is None and got["paincontrol"][4] == SamplerConfig()
    np.testing.assert_array_equal(got["paincontrol_warp_start"][6][0],
                                  engine.generate("warp", face, levels)[0])  # fmt: skip
    assert not got["no_identity"][2].any() and got["paincontrol"][2].any()
    assert not got["no_landmarks"][1].any() and got["paincontrol"][1].any()
    assert got["no_text"][3] == [""] and got["paincontrol"][3] != [""]
    # AU guidance: the same sampler with guidance added, steering toward the requested AUs
    assert (
        replace(got["paincontrol_au_guided"][4], au_guidance=0.0, au_guidance_last=1.0)
        == (got["paincontrol"][4])
    )
    steer = guides[methods.index("paincontrol_au_guided")]
    assert [g for i, g in guides.items() if i != methods.index("paincontrol_au_guided")] == [
        None
    ] * (len(methods) - 1)
    np.testing.assert_allclose(steer.targets[0][PAIN_AUS.index("AU43")], 1.0)
    np.testing.assert_array_equal(steer.neutrals[0], face.crop(64))


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


def test_cli_on_a_real_photograph(astronaut, tmp_path, capsys):
    out = tmp_path / "astro"
    code = cli(["transfer", "--target", str(astronaut), "--out", str(out), "--mode", "explicit",
                "--aus", "AU4=4,AU43=1", "--method", "warp", "paincontrol",
                "--checkpoint", str(SHIPPED), "--steps", "2"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    # The shipped checkpoint saw SynthPain renderings only: said once, with what to use instead.
    assert err.count("trained on SynthPain renderings only") == 1 and "--method warp" in err
    # It says which sampler ran: the tuned one, with the option given replacing its setting.
    said = next(line for line in err.splitlines() if line.startswith("sampler: "))
    assert "DDIM steps run from" in said and "['steps'] from the command line" in said
    manifest = json.loads((out / "manifest.json").read_text())
    assert [m["method"] for m in manifest] == ["warp", "paincontrol"]
    assert manifest[0]["aus"] == {"AU04": 4.0, "AU43": 1.0} and manifest[0]["pspi"] == 5
    for entry in manifest:
        image = np.asarray(Image.open(out / entry["path"]))
        assert image.shape == (64, 64, 3) and image.std() > 5
    assert (out / "control" / "explicit.png").is_file()


def test_cli_delta_from_a_sequence_folder(tiny_synthpain, tmp_path, capsys):
    data_dir, table = tiny_synthpain
    first = table[table["split"] == "test"]["subject"].unique()
    source, target = first[0], table[table["subject"] != first[0]]["subject"].iloc[0]
    frames = table[table["subject"] == source].sort_values(["sequence", "frame"])
    folder = tmp_path / "sequence"
    folder.mkdir()
    for i, rel in enumerate(frames["image"]):
        Image.open(data_dir / rel if not Path(rel).is_absolute() else rel).save(
            folder / f"f{i:02d}.png"
        )
    target_image = table[(table["subject"] == target) & table["neutral_reference"]]["image"].iloc[0]
    target_path = data_dir / target_image if not Path(target_image).is_absolute() else target_image
    out = tmp_path / "delta"
    code = cli(["transfer", "--source", str(folder), "--target", str(target_path), "--out",
                str(out), "--method", "warp", "--size", "96"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest) == len(frames) and all(m["mode"] == "delta" for m in manifest)
    assert np.asarray(Image.open(out / manifest[0]["path"])).shape == (96, 96, 3)


def test_cli_errors_are_clear(astronaut, tmp_path, capsys):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((96, 96, 3), 128, np.uint8)).save(blank)
    cases = [
        (["--target", str(blank), "--mode", "explicit", "--pspi", "8", "--method", "warp"],
         "found no face"),
        (["--target", str(astronaut), "--mode", "explicit", "--pspi", "8",
          "--checkpoint", str(tmp_path)], "not a PainControl checkpoint"),
        (["--target", str(astronaut), "--source", str(astronaut), "--method", "warp"],
         "needs the source's neutral face"),
        (["--target", str(astronaut), "--mode", "explicit", "--method", "warp"],
         "exactly one of --aus"),
        (["--target", str(tmp_path / "none.png"), "--mode", "explicit", "--pspi", "3",
          "--method", "warp"], "none.png"),
    ]  # fmt: skip
    for argv, message in cases:
        assert cli(["transfer", "--out", str(tmp_path / "o"), *argv]) == 2
        assert message in capsys.readouterr().err, argv
    assert not (tmp_path / "o" / "manifest.json").exists()  # nothing half-written


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_cli_bad_arguments_are_one_line_and_write_nothing(astronaut, tmp_path, capsys):
    """Before the fix, --steps 0 wrote the warp images and then raised a traceback."""
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder")
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"keep me")
    explicit = ["--target", str(astronaut), "--mode", "explicit", "--pspi", "8"]
    cases = [
        ([*explicit, "--out", str(tmp_path / "o"), "--method", "warp", "paincontrol",
          "--steps", "0"], "steps 0"),
        ([*explicit, "--out", str(a_file), "--method", "warp"], "is a file"),
        ([*explicit, "--out", str(foreign), "--method", "warp"], "not a paincontrol transfer"),
        ([*explicit, "--out", str(tmp_path / "o"), "--method", "warp", "--size", "0"], "--size"),
        ([*explicit, "--out", str(tmp_path / "o"), "--start-strength", "2"], "start_strength"),
    ]  # fmt: skip
    for argv, message in cases:
        assert cli(["transfer", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()
    assert a_file.read_text() == "not a folder" and _listing(foreign) == {"holiday.jpg": b"keep me"}


def test_cli_out_is_replaced_whole_and_kept_on_failure(astronaut, tmp_path, capsys, monkeypatch):
    """Before the fix, a second run into --out left the first run's images beside a manifest
    that did not list them, and a failing run left partial files."""
    out = tmp_path / "out"
    base = ["transfer", "--target", str(astronaut), "--out", str(out), "--mode", "explicit",
            "--size", "64"]  # fmt: skip
    assert cli([*base, "--pspi", "8", "--method", "warp", "no_landmarks",
                "--checkpoint", str(SHIPPED), "--steps", "2"]) == 0  # fmt: skip
    first = _listing(out)
    assert {k.split("/")[0] for k in first} == {"warp", "no_landmarks", "control", "manifest.json"}

    def fail_second(self, method, *args, **kwargs):
        if method == "paincontrol":
            raise RuntimeError("simulated failure in the middle of a run")
        return original(self, method, *args, **kwargs)

    original = Transfer.generate
    monkeypatch.setattr(Transfer, "generate", fail_second)
    with pytest.raises(RuntimeError, match="simulated"):
        cli([*base, "--pspi", "4", "--method", "warp", "paincontrol", "--checkpoint",
             str(SHIPPED), "--steps", "2"])  # fmt: skip
    assert _listing(out) == first  # the previous output, untouched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out-")]  # no partial folder
    monkeypatch.undo()
    capsys.readouterr()

    assert cli([*base, "--aus", "AU4=3", "--method", "warp"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {m["path"] for m in manifest} | {"manifest.json", "control/explicit.png"}
    assert set(_listing(out)) == listed  # exactly what the manifest lists
