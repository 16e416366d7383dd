"""The conditioned model: build, save/load, sample, train, resume, data-parallel, sd15 path."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from sd15_fakes import fake_sd15

from paincontrol_lib.model.presets import ModelConfig, PainControlModel, build_model
from paincontrol_lib.model.sampler import SamplerConfig
from paincontrol_lib.model.text import build_tokenizer, prompt_from_aus
from paincontrol_lib.model.train import latest_checkpoint, main, parse_args

SMALL = dict(block_out_channels=(8, 16, 16), cross_attention_dim=16, resolution=32)
TRAIN_SMALL = ["--resolution", "32", "--block_out_channels", "8", "16", "16",
               "--train_batch_size", "4", "--no-progress", "--validation_steps", "0",
               "--references_per_subject", "2"]  # fmt: skip


def _train_module_args(landmarks_dir, out, steps: int, every: int) -> list[str]:
    """``-m paincontrol_lib.model.train`` with data, output, step count and checkpoint interval."""
    return [
        "-m", "paincontrol_lib.model.train", "--landmarks_dir", str(landmarks_dir),
        "--output_dir", str(out), "--max_steps", str(steps), "--checkpointing_steps", str(every),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def landmarks_dir(tmp_path_factory, tiny_synthpain):
    from paincontrol_lib.data.sources import load_records
    from paincontrol_lib.landmarks.batch import build_landmark_table

    data_dir, _ = tiny_synthpain
    out = tmp_path_factory.mktemp("lm") / "landmarks"
    build_landmark_table(
        load_records("synthpain", data_dir), data_dir, out, 64, workers=1, progress=False
    )
    return out


def test_prompts_and_tokenizer():
    prompt = prompt_from_aus({"AU04": 4, "AU43": 1, "AU10": 2, "AU01": float("nan")})
    assert (
        prompt.startswith("a face in moderate pain") and "brows strongly lowered" in prompt
    )  # PSPI 7
    assert "eyes closed" in prompt and "inner brows" not in prompt
    assert prompt_from_aus({}) == "a neutral face"
    tok = build_tokenizer(48)
    ids = tok(prompt).input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id and len(ids) < 48
    assert "lowered</w>" in tok.convert_ids_to_tokens(ids)


def test_save_load_round_trip_is_exact(tmp_path):
    model = build_model(ModelConfig(**SMALL), seed=1)
    # Make the adapter non-trivial so a dropped weight would show.
    with torch.no_grad():
        for p in model.identity_parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(tmp_path / "m")
    again = PainControlModel.from_pretrained(tmp_path / "m")
    x, t = torch.randn(2, 12, 16, 16), torch.tensor([10, 500])  # 32 px in 2x2 patches
    text = torch.randn(2, 5, 16)
    ids = torch.randn(2, 1, 128)
    outs = []
    for m in (model, again):
        down, mid = m.controlnet(
            x,
            t,
            encoder_hidden_states=text,
            controlnet_cond=torch.rand(2, 3, 32, 32).fill_(0.5),
            return_dict=False,
        )
        outs.append(
            m.unet(
                x,
                t,
                encoder_hidden_states=text,
                added_cond_kwargs={"image_embeds": [ids]},
                down_block_additional_residuals=down,
                mid_block_additional_residual=mid,
            ).sample
        )
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    with pytest.raises(FileNotFoundError, match="not a PainControl checkpoint"):
        PainControlModel.from_pretrained(tmp_path)


NOISE3 = SamplerConfig(steps=3, identity_scale=1.0, start="noise")


def _photos(n: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_sampling_uses_identity_and_is_seeded():
    from paincontrol_lib.model.sampling import sample

    model = build_model(ModelConfig(**SMALL), seed=0)
    with torch.no_grad():
        for p in model.identity_parameters():
            p.add_(torch.randn_like(p) * 0.5)
    controls = torch.rand(2, 3, 32, 32)
    ids = np.random.default_rng(0).normal(size=(2, 128)).astype(np.float32)
    prompts, seeds = ["a neutral face"] * 2, [3, 4]
    a = sample(model, controls, ids, prompts, NOISE3, seeds)
    b = sample(model, controls, ids, prompts, NOISE3, seeds)
    c = sample(model, controls, -ids, prompts, NOISE3, seeds)
    g = sample(model, controls, ids, prompts, replace(NOISE3, guidance_scale=2.0), seeds)
    assert a.shape == (2, 32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c), "identity embedding has no effect"
    assert g.shape == a.shape


def test_sampling_from_a_start_image_runs_the_tail_of_the_schedule():
    from paincontrol_lib.model.sampling import TailDDIMScheduler, sample

    full = TailDDIMScheduler(timestep_spacing="trailing")
    full.set_timesteps(6)
    tail = TailDDIMScheduler(timestep_spacing="trailing")
    warped = SamplerConfig(steps=6, start="warped_target", start_strength=0.33)
    tail.keep = warped.steps_run
    tail.set_timesteps(6)
    assert tail.keep == 2 and tail.timesteps.tolist() == full.timesteps[-2:].tolist()
    runs = [replace(warped, start_strength=s).steps_run for s in (1.0, 0.5, 0.01, 0.0)]
    assert runs == [6, 3, 1, 0]  # strength 0: the start image itself, no step
    assert SamplerConfig(steps=6, start="noise", start_strength=0.5).steps_run == 6
    for bad in (-0.2, 1.5):
        with pytest.raises(ValueError, match="start_strength"):
            SamplerConfig(start_strength=bad)

    model = build_model(ModelConfig(**SMALL), seed=0)
    controls, prompts, seeds = torch.rand(2, 3, 32, 32), ["a neutral face"] * 2, [3, 4]
    photos = _photos(2)
    start = replace(NOISE3, start="warped_target", start_strength=1.0)
    noise = sample(model, controls, None, prompts, NOISE3, seeds)
    # strength 1 is the pure-noise sampler, with or without a start image
    same = sample(model, controls, None, prompts, start, seeds, photos)
    np.testing.assert_array_equal(noise, same)
    partial = replace(start, start_strength=0.34)
    one = sample(model, controls, None, prompts, partial, seeds, photos)
    again = sample(model, controls, None, prompts, partial, seeds, photos)
    np.testing.assert_array_equal(one, again)
    assert not np.array_equal(one, noise)
    the_start = sample(model, controls, None, prompts, replace(start, start_strength=0.0), seeds,
                       photos)  # fmt: skip
    np.testing.assert_array_equal(the_start, photos)
    with pytest.raises(ValueError, match="start images of shape"):
        sample(model, controls, None, prompts, replace(start, start_strength=0.5), seeds,
               photos[:1])  # fmt: skip


def test_held_out_reference_frames_and_amplitude():
    from types import SimpleNamespace

    import pandas as pd

    from paincontrol_lib.model.heldout import _slope, identity_photos

    images = torch.arange(2.0)[:, None, None, None].expand(2, 3, 4, 4)
    table, keys = pd.DataFrame({"key": ["a/1", "b/1"]}), {"A": ["a/1"], "B": ["b/0"]}
    examples = SimpleNamespace(table=table, reference_keys=keys, images=images)
    assert identity_photos(examples, ["A", "A"]).shape == (2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"\['B'\] are not among the examples"):
        identity_photos(examples, ["A", "B"])
    requested = np.array([0.1, 0.2, 0.4, 0.3])
    assert _slope(requested, 0.5 * requested + 1) == pytest.approx(0.5)
    assert _slope(np.ones(4), requested) is None


def test_run_signature_follows_the_starting_weights_not_their_path(landmarks_dir, tmp_path):
    from paincontrol_lib.model.train import run_signature

    start = tmp_path / "start"
    build_model(ModelConfig(**SMALL), seed=0).save_pretrained(start)
    args = parse_args(["--landmarks_dir", str(landmarks_dir), "--output_dir", str(tmp_path / "o"),
                       "--init_from", str(start), *TRAIN_SMALL])  # fmt: skip
    before = run_signature(args)
    assert run_signature(args) == before
    build_model(ModelConfig(**SMALL), seed=1).save_pretrained(start)  # republished in place
    assert run_signature(args) != before


def test_bad_config_and_args_are_rejected(landmarks_dir, tmp_path):
    with pytest.raises(ValueError, match="preset"):
        ModelConfig(preset="sdxl")
    with pytest.raises(ValueError, match="pretrained"):
        ModelConfig(preset="sd15")
    with pytest.raises(SystemExit):
        parse_args(
            ["--landmarks_dir", str(landmarks_dir), "--output_dir", "x", "--resolution", "30"]
        )
    with pytest.raises(SystemExit):
        parse_args(["--landmarks_dir", str(tmp_path / "none"), "--output_dir", "x"])


def test_train_a_few_steps_reload_and_sample(landmarks_dir, tmp_path):
    from paincontrol_lib.model.sampling import sample

    args = parse_args(
        [
            "--landmarks_dir",
            str(landmarks_dir),
            "--output_dir",
            str(tmp_path / "run"),
            "--max_steps",
            "3",
            "--checkpointing_steps",
            "2",
            *TRAIN_SMALL,
        ]
    )
    result = main(args)
    assert result["steps"] == 3
    # The checkpoint says what it learned from (the CLI warns on photographs from it).
    from paincontrol_lib.config import REPO_ROOT
    from paincontrol_lib.model.presets import checkpoint_domains

    assert checkpoint_domains(tmp_path / "run" / "final") == ["synthpain"]
    assert checkpoint_domains(REPO_ROOT / "pretrained" / "tiny-synthpain") == ["synthpain"]
    assert result["text_conditioning"]["words_split"] == []
    assert latest_checkpoint(tmp_path / "run").name == "checkpoint-3"
    assert (tmp_path / "run" / "checkpoint-2").is_dir()
    assert not list((tmp_path / "run").glob(".tmp-*"))
    model = PainControlModel.from_pretrained(tmp_path / "run" / "final")
    two_steps = SamplerConfig(steps=2, start="noise")
    images = sample(model, torch.rand(1, 3, 32, 32), None, ["a neutral face"], two_steps, [0])
    assert images.shape == (1, 32, 32, 3)
    from_photo = replace(two_steps, start="target_photo", start_strength=0.5)
    again = sample(model, torch.rand(1, 3, 32, 32), None, ["a neutral face"], from_photo, [0],
                   _photos(1))  # starts from the VAE latent of a photo  # fmt: skip
    assert again.shape == (1, 32, 32, 3)
    log = (tmp_path / "run" / "logs" / "loss.csv").read_text().splitlines()
    assert log[0] == "step,seconds,loss" and len(log) == 4


def test_training_resumes_after_kill(landmarks_dir, tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable, *_train_module_args(landmarks_dir, out, steps=8, every=2),
        "--resume_from_checkpoint", "latest", *TRAIN_SMALL,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 240
    while time.time() < deadline and not (out / "checkpoint-4").is_dir():
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / "checkpoint-4").is_dir(), "training did not reach step 4 in time"
    assert not (out / "final").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 8
    state = json.loads((latest_checkpoint(out) / "training_state.json").read_text())
    assert state["step"] == 8
    assert "resumed from" in done.stdout + done.stderr
    # Exact: the loss log has each step once (before the fix the steps a killed run logged
    # past its checkpoint were repeated) and the weights equal an uninterrupted run's (before
    # the fix the resumed run restarted the data order and the per-step draws).
    log = (out / "logs" / "loss.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in log[1:]] == list(range(1, 9))
    straight = tmp_path / "straight"
    whole = subprocess.run(
        [sys.executable, *_train_module_args(landmarks_dir, straight, steps=8, every=2),
         *TRAIN_SMALL],  # fmt: skip
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert whole.returncode == 0, whole.stderr[-2000:]
    assert json.loads(whole.stdout.strip().splitlines()[-1])["weights"] == summary["weights"]
    # A changed setting does not resume a checkpoint of another run.
    other = subprocess.run(
        [
            *cmd[: -len(TRAIN_SMALL)],
            *TRAIN_SMALL[:-2],
            "--references_per_subject",
            "3",
            "--max_steps",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert other.returncode == 0 and "starting afresh" in other.stdout + other.stderr


def test_data_parallel_two_processes_agree(landmarks_dir, tmp_path):
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).parent / "torchrun"
    run = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "--master_port",
            "29517",
            *_train_module_args(landmarks_dir, out, steps=3, every=3),
            "--threads",
            "1",
            *TRAIN_SMALL,
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    digests = [(out / "logs" / f"weights-rank{r}.txt").read_text() for r in (0, 1)]
    assert digests[0] == digests[1]
    assert json.loads((out / "checkpoint-3" / "training_state.json").read_text())["step"] == 3


def test_sd15_preset_code_path_offline(landmarks_dir, tmp_path):
    """The sd15 path (latent diffusion, frozen UNet, ControlNet.from_unet, adapter) on a local
    folder laid out like SD 1.5 with tiny configs. Real weights, fp16 and speed need a GPU."""
    from paincontrol_lib.model.sampling import sample

    sd = fake_sd15(tmp_path / "sd15")
    unet_before = {
        k: v.clone()
        for k, v in __import__("diffusers")
        .UNet2DConditionModel.from_pretrained(sd / "unet")
        .state_dict()
        .items()
    }
    args = parse_args(
        [
            "--landmarks_dir",
            str(landmarks_dir),
            "--output_dir",
            str(tmp_path / "run"),
            "--preset",
            "sd15",
            "--pretrained",
            str(sd),
            "--resolution",
            "32",
            "--max_steps",
            "2",
            "--checkpointing_steps",
            "2",
            "--train_batch_size",
            "2",
            "--no-progress",
            "--validation_steps",
            "0",
            "--references_per_subject",
            "2",
        ]
    )
    assert main(args)["steps"] == 2
    model = PainControlModel.from_pretrained(tmp_path / "run" / "final")
    assert model.config.preset == "sd15" and not model.pixel_space
    after = model.unet.state_dict()
    frozen = [k for k in unet_before if "processor" not in k and "encoder_hid_proj" not in k]
    assert all(torch.equal(unet_before[k], after[k]) for k in frozen), (
        "the SD UNet must stay frozen"
    )
    two_steps = SamplerConfig(steps=2, start="noise")
    images = sample(model, torch.rand(1, 3, 32, 32), None, ["a neutral face"], two_steps, [0])
    assert images.shape == (1, 32, 32, 3)
    from_photo = replace(two_steps, start="target_photo", start_strength=0.5)
    again = sample(model, torch.rand(1, 3, 32, 32), None, ["a neutral face"], from_photo, [0],
                   _photos(1))  # starts from the VAE latent of a photo  # fmt: skip
    assert again.shape == (1, 32, 32, 3)


def test_every_vocabulary_word_is_one_token_and_no_prompt_is_cut(tiny_synthpain):
    """Before the fix "slightly" became 7 tokens and explicit PSPI prompts ran past 64 tokens,
    cut mid-word. Every prompt the pipeline can write: each explicit PSPI level, each AU
    alone at each intensity, every SynthPain prompt, and the longest possible one."""
    from paincontrol_lib.model.presets import ModelConfig
    from paincontrol_lib.model.text import (
        AU_PHRASES,
        longest_prompt,
        split_words,
        text_conditioning,
        vocabulary_words,
    )
    from paincontrol_lib.retarget import aus_for_pspi

    tok = build_tokenizer(ModelConfig().max_prompt_tokens)
    assert split_words(tok) == []
    for word in vocabulary_words():
        assert len(tok.tokenize(word)) == 1, word
    _, table = tiny_synthpain
    au_columns = [c for c in table.columns if c.startswith("AU")]
    prompts = [prompt_from_aus(aus_for_pspi(level)) for level in np.arange(0, 16.5, 0.5)]
    prompts += [prompt_from_aus({au: v}) for au, _, _ in AU_PHRASES for v in (1, 2, 3, 4, 5)]
    prompts += [prompt_from_aus(row[au_columns].to_dict()) for _, row in table.iterrows()]
    report = text_conditioning(tok, prompts)
    assert report["prompts_truncated"] == 0 and report["longest_possible_prompt_fits"], report
    longest = tok(longest_prompt()).input_ids
    assert tok.decode(longest, skip_special_tokens=True).replace(" ,", ",") == longest_prompt()


def test_training_examples_move_to_the_gpu_only_when_they_fit(monkeypatch):
    """On CUDA the prepared examples live on the GPU only while they take at most a quarter of
    its free memory; a real dataset at 512 px (hundreds of GB) stays on the host and each batch
    is copied. Free memory is faked: no GPU here."""
    import torch

    from paincontrol_lib.model import train

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (4_000, 8_000))
    assert train._fits_on_device(1_000, "cuda")
    assert not train._fits_on_device(1_001, "cuda")


def test_examples_are_held_as_uint8_and_batches_read_the_old_floats_exactly(landmarks_dir):
    """A 512 px dataset cannot be held as float32 (docs/real-data.md); faces and control images
    are held as uint8 and read per batch, bit-identical to the eager float32 conversion they
    replace (so the default run's metrics do not move)."""
    from paincontrol_lib.landmarks.align import aligned_crop
    from paincontrol_lib.landmarks.control import render_control
    from paincontrol_lib.landmarks.image import load_image
    from paincontrol_lib.landmarks.table import load_landmark_table, row_transform
    from paincontrol_lib.model.data import prepare_examples, region_mask

    table = load_landmark_table(landmarks_dir)
    examples = prepare_examples(table, {k: np.zeros(128) for k in table["key"]}, 32)
    assert examples.images.pixels.dtype == examples.controls.pixels.dtype == torch.uint8
    old_images, old_controls, old_masks = [], [], []  # the former eager conversion, row by row
    for row in examples.table.itertuples(index=False):
        aligned = np.asarray(row.aligned, dtype=np.float64).reshape(-1, 3)
        crop = np.array(aligned_crop(load_image(row.image), row_transform(row), 32))
        old_images.append(torch.from_numpy(crop).permute(2, 0, 1).float() / 127.5 - 1)
        control = np.array(render_control(aligned * 32, 32))
        old_controls.append(torch.from_numpy(control).permute(2, 0, 1).float() / 255)
        old_masks.append(torch.from_numpy(region_mask(aligned, 32))[None])
    old_images, old_controls = torch.stack(old_images), torch.stack(old_controls)
    batch = np.array([3, 0, len(examples) - 1, 3])  # a training batch: example indices
    for new, old in ((examples.images[batch], old_images[batch]),
                     (examples.controls[batch], old_controls[batch])):  # fmt: skip
        assert new.dtype == torch.float32 and torch.equal(new, old)
        assert new.stride() == old.stride()  # the same layout: the same convolution kernels
    assert torch.equal(examples.images[2], old_images[2])
    assert torch.equal(examples.masks, torch.stack(old_masks))


def test_every_uint8_level_reads_as_its_old_float_on_the_host_and_after_a_move():
    from paincontrol_lib.model.data import store_frames

    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    frame = np.stack([levels, levels.T, 255 - levels], axis=-1)
    images, controls, _ = store_frames([(frame, frame, np.zeros((16, 16), np.float32))], 1, 16)
    as_float = torch.from_numpy(frame).permute(2, 0, 1).float()
    assert torch.equal(images[[0]], (as_float / 127.5 - 1)[None])
    assert torch.equal(controls[0], as_float / 255)
    assert torch.equal(images.to("cpu")[0], images[0])
    with pytest.raises(ValueError, match="frame 0: crop float32"):
        store_frames([(frame.astype(np.float32), frame, np.zeros((16, 16)))], 1, 16)
    with pytest.raises(ValueError, match="1 frames rendered, 2 expected"):
        store_frames([(frame, frame, np.zeros((16, 16)))], 2, 16)


def _packed(path, splits: dict[str, str], size: int = 16) -> dict[str, np.ndarray]:
    """An ``examples.npz`` of people ``subject -> split`` (two frames each), written field by
    field as ``save_examples`` always has: a file packed by any version. Returns its arrays."""
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    rows = [(s, f"{s}/{j}", split) for s, split in splits.items() for j in range(2)]
    faces = rng.integers(0, 256, (len(rows), size, size, 3), dtype=np.uint8)
    jpegs = []
    for face in faces:
        buf = io.BytesIO()
        Image.fromarray(face).save(buf, "JPEG", quality=95, subsampling=0)
        jpegs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
    subjects = sorted(splits)
    meta = {"table": {"subject": [r[0] for r in rows], "key": [r[1] for r in rows],
                      "split": [r[2] for r in rows]},
            "prompts": ["a neutral face"] * len(rows), "subjects": subjects,
            "reference_keys": [[f"{s}/0", f"{s}/1"] for s in subjects]}  # fmt: skip
    arrays = dict(
        jpeg=np.concatenate(jpegs), jpeg_offsets=np.cumsum([0] + [len(j) for j in jpegs]),
        controls=rng.integers(0, 256, (len(rows), 3, size, size), dtype=np.uint8),
        masks=rng.integers(0, 256, (len(rows), 1, size, size), dtype=np.uint8),
        references=rng.random((2 * len(subjects), 128), dtype=np.float32),
        meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
    )  # fmt: skip
    np.savez_compressed(path, **arrays)
    return arrays | {"faces": faces}


def test_packed_examples_keep_their_file_format_and_load_as_uint8(tmp_path):
    """``examples.npz`` was always JPEG + uint8: files packed before still load, to the floats
    the loader gave before, and pack again to the same controls and masks."""
    import io

    from PIL import Image

    from paincontrol_lib.model.data import load_examples, save_examples

    packed = _packed(tmp_path / "examples.npz", {"A": "train", "B": "test"})
    loaded = load_examples(tmp_path / "examples.npz")
    assert loaded.images.pixels.dtype == loaded.controls.pixels.dtype == torch.uint8
    assert torch.equal(loaded.controls.pixels, torch.from_numpy(packed["controls"]))
    jpeg, offsets = packed["jpeg"], packed["jpeg_offsets"]
    decoded = np.stack([np.asarray(Image.open(io.BytesIO(jpeg[a:b].tobytes())))
                        for a, b in zip(offsets[:-1], offsets[1:], strict=True)])  # fmt: skip
    old = torch.from_numpy(decoded).permute(0, 3, 1, 2).float() / 127.5 - 1  # the old loader
    assert torch.equal(loaded.images[np.arange(len(loaded))], old)
    assert torch.equal(loaded.controls[:], torch.from_numpy(packed["controls"]).float() / 255)
    save_examples(loaded, tmp_path / "again.npz")
    with np.load(tmp_path / "again.npz") as again:
        np.testing.assert_array_equal(again["controls"], packed["controls"])
        np.testing.assert_array_equal(again["masks"], packed["masks"])
    error = (load_examples(tmp_path / "again.npz").images[:] - old).abs()
    assert error.mean() < 0.05  # JPEG quality 95, twice, of random pixels


def test_validation_grids_show_validation_people_never_test_people(tmp_path):
    """The grids written while training are looked at: they must come from the val split."""
    from paincontrol_lib.model.train import _HeldOut, validation_grid

    _packed(tmp_path / "examples.npz", {"A": "train", "B": "val", "C": "test", "D": "val"}, 32)
    args = parse_args(["--examples", str(tmp_path / "examples.npz"), "--output_dir",
                       str(tmp_path / "run"), "--num_validation", "4"])  # fmt: skip
    grid_people = _HeldOut(args)()
    assert set(grid_people.table["subject"]) == {"B", "D"}
    assert (grid_people.table["split"] == "val").all()
    model = build_model(ModelConfig(**SMALL), seed=0)
    validation_grid(model, None, [], args, grid_people, tmp_path / "grid.png")
    assert (tmp_path / "grid.png").is_file()


def test_a_fresh_identity_adapter_trains_alone_on_the_frozen_generator(landmarks_dir, tmp_path):
    """``--trainable identity_adapter``: the starting checkpoint's adapter is replaced by a fresh
    one (the same whatever adapter it had), only the adapter's weights move, and the saved model
    reads the run's identity backend."""
    from paincontrol_lib.model.train import start_model

    start = tmp_path / "start"
    build_model(ModelConfig(**SMALL), seed=3).save_pretrained(start)
    argv = ["--landmarks_dir", str(landmarks_dir), "--output_dir", str(tmp_path / "run"),
            "--init_from", str(start), "--trainable", "identity_adapter", "--max_steps", "2",
            "--learning_rate", "0.01", *TRAIN_SMALL]  # fmt: skip
    args = parse_args(argv)
    fresh = start_model(args)
    shipped = PainControlModel.from_pretrained(start)
    before = {k: v.clone() for k, v in fresh.adapter_state_dict()["image_proj"].items()}
    assert any(
        not torch.equal(v, shipped.adapter_state_dict()["image_proj"][k]) for k, v in before.items()
    )  # a fresh adapter, not the checkpoint's
    main(args)
    trained = PainControlModel.from_pretrained(tmp_path / "run" / "final")
    after = trained.adapter_state_dict()["image_proj"]
    assert all(not torch.equal(before[k], after[k]) for k in ("proj.0.weight", "proj.2.weight"))
    for part in ("controlnet", "text_encoder"):
        old, new = getattr(shipped, part).state_dict(), getattr(trained, part).state_dict()
        assert all(torch.equal(old[k], new[k]) for k in old), f"{part} moved"
    frozen = {k: v for k, v in shipped.unet.state_dict().items() if "_ip" not in k
              and "encoder_hid_proj" not in k}  # fmt: skip
    moved = [k for k, v in trained.unet.state_dict().items() if k in frozen
             and not torch.equal(v, frozen[k])]  # fmt: skip
    assert moved == []
    assert trained.config.identity_backend == "dlib"


def test_another_encoder_resets_the_adapter_and_zero_steps_refuse_it(landmarks_dir, tmp_path):
    """A checkpoint given another encoder's embeddings starts a fresh adapter (its tokens mean
    nothing in the new space); with no steps to train it, the run is refused, saying why."""
    from paincontrol_lib.model.train import start_model

    start = tmp_path / "start"
    build_model(ModelConfig(**SMALL, identity_backend="dlib"), seed=0).save_pretrained(start)
    common = ["--landmarks_dir", str(landmarks_dir), "--output_dir", str(tmp_path / "o"),
              "--init_from", str(start), "--identity_backend", "synthface",
              *TRAIN_SMALL]  # fmt: skip
    model = start_model(parse_args([*common, "--max_steps", "1"]))
    assert model.config.identity_backend == "synthface" and model.config.identity_dim == 128
    with pytest.raises(ValueError, match="untrained"):
        start_model(parse_args([*common, "--max_steps", "0"]))
