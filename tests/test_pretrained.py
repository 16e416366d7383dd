"""The shipped starting checkpoint: packed examples, provenance, reproduction, fine-tuning."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from paincontrol_lib.model.pretrain import prepare, training_argv

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "pretrained" / "tiny-synthpain"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain")
    summary = prepare(out, seed=1, identities=4, sequences=1, frames=3, test_fraction=0.25,
                      references=2, workers=1)  # fmt: skip
    return out, summary


def test_packed_examples_match_the_landmark_table(prepared):
    from paincontrol_lib.landmarks.table import load_landmark_table
    from paincontrol_lib.model.data import (
        identity_embeddings,
        load_examples,
        prepare_examples,
        reference_rows,
    )

    out, summary = prepared
    assert summary["n_examples"] == 12 and summary["n_train_subjects"] == 3
    train, test = (load_examples(out / "examples.npz", s) for s in ("train", "test"))
    assert len(train) + len(test) == 12
    assert not set(train.table["subject"]) & set(test.table["subject"])
    table = load_landmark_table(out / "landmarks")
    refs = reference_rows(table, 2, 1)
    direct = prepare_examples(table, identity_embeddings(refs, "dlib", out / "identity_cache"), 64)
    pick = direct.table["split"].eq("train").to_numpy()
    assert list(direct.table["key"][pick]) == list(train.table["key"])
    error = (direct.images[pick] - train.images[:]).abs()
    assert error.mean() < 0.02 and error.max() < 0.25  # JPEG quality 95
    assert torch.allclose(direct.controls[pick], train.controls[:], atol=1 / 255)
    assert [direct.prompts[i] for i in np.flatnonzero(pick)] == train.prompts
    for subject, embeddings in train.references.items():
        np.testing.assert_allclose(embeddings, direct.references[subject], rtol=1e-6)


def test_pretraining_people_are_not_the_default_people(tmp_path):
    from paincontrol_lib.data.synthpain.identity import sample_identity
    from paincontrol_lib.data.synthpain.render import default_renderer

    model = default_renderer(64, 0.6, 1).model
    ours, theirs = sample_identity(model, 0, 3), sample_identity(model, 1, 3)
    assert not np.allclose(ours.shape, theirs.shape) and not np.allclose(ours.skin, theirs.skin)
    with pytest.raises(ValueError, match="seed 0"):
        prepare(tmp_path, seed=0, identities=4, sequences=1, frames=3, test_fraction=0.25,
                references=2)  # fmt: skip


def _provenance() -> dict:
    return json.loads((SHIPPED / "PROVENANCE.json").read_text())


def test_shipped_checkpoint_is_small_and_documented():
    from paincontrol_lib.model.presets import PainControlModel

    size = sum(f.stat().st_size for f in SHIPPED.rglob("*") if f.is_file())
    assert size <= 30e6, f"{SHIPPED} is {size / 1e6:.1f} MB (limit 30)"
    record = _provenance()
    assert record["prepared"]["options"]["seed"] != 0
    runs = record["training_runs"]
    assert runs[0]["arguments"]["init_from"] is None  # the chain starts from random weights
    for run in runs:
        assert run["examples_sha256"] == record["prepared"]["examples_sha256"]
    assert len(record["training_commands"]) == len(runs)
    revision = record["code_revision"]
    assert len(revision) == 40
    if (REPO / ".git").exists():
        shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=REPO,
                                 capture_output=True, text=True).stdout.strip()  # fmt: skip
        if shallow == "false":
            found = subprocess.run(["git", "cat-file", "-e", f"{revision}^{{commit}}"], cwd=REPO)
            assert found.returncode == 0, f"code revision {revision} is not in this repository"
    model = PainControlModel.from_pretrained(SHIPPED)
    assert model.config.resolution == runs[0]["arguments"]["resolution"]


def _state(model) -> dict:
    parts = {"unet": model.unet, "controlnet": model.controlnet, "text": model.text_encoder}
    return {f"{k}.{n}": p.shape for k, m in parts.items() for n, p in m.state_dict().items()}


def test_pipeline_reproduces_the_shipped_checkpoint_given_the_time(prepared, tmp_path):
    """The recorded training commands, in order (the generator's, then its identity adapter's),
    on this pipeline's own packed data, for 2 steps each instead of the recorded thousands, make
    a model of exactly the shipped architecture, except the text encoder's token table: the
    shipped checkpoint predates the tokenizer fix (its own tokenizer splits words; retraining it
    needs a GPU) and the current tokenizer has another vocabulary size."""
    from paincontrol_lib.model.presets import PainControlModel
    from paincontrol_lib.model.text import build_tokenizer, split_words
    from paincontrol_lib.model.train import main, parse_args

    out, _ = prepared
    start = None
    for i, run in enumerate(_provenance()["training_runs"]):
        argv = training_argv(run["arguments"], examples=str(out / "examples.npz"),
                             output_dir=str(tmp_path / f"run{i}"), init_from=start, max_steps=2,
                             max_minutes=None, train_batch_size=4, validation_steps=0)  # fmt: skip
        result = main(parse_args(argv))
        assert result["steps"] == 2
        start = result["final"]
    # then the identity adapter's run (model/identity_adapter.py), as the shipped folder records it
    adapter = json.loads((SHIPPED / "training.json").read_text())["arguments"]
    assert adapter["trainable"] == "identity_adapter"
    argv = training_argv(adapter, examples=str(out / "examples.npz"), landmarks_dir=None,
                         identity_cache_dir=None, output_dir=str(tmp_path / "adapter"),
                         init_from=start, max_steps=2, train_batch_size=4)  # fmt: skip
    start = main(parse_args(argv))["final"]
    made = PainControlModel.from_pretrained(start)
    shipped = PainControlModel.from_pretrained(SHIPPED)
    assert made.config == shipped.config
    table = "text.embeddings.token_embedding.weight"
    made_state, shipped_state = _state(made), _state(shipped)
    assert made_state.pop(table) == (len(build_tokenizer()), made.config.cross_attention_dim)
    assert shipped_state.pop(table) == (len(shipped.tokenizer), shipped.config.cross_attention_dim)
    assert made_state == shipped_state
    assert split_words(made.tokenizer) == [] and split_words(shipped.tokenizer)


def test_fine_tuning_starts_from_the_shipped_weights(prepared, tmp_path):
    from paincontrol_lib.model.presets import PainControlModel
    from paincontrol_lib.model.train import main, parse_args

    out, _ = prepared
    base = ["--examples", str(out / "examples.npz"), "--output_dir", str(tmp_path),
            "--init_from", str(SHIPPED), "--train_batch_size", "4", "--validation_steps", "0",
            "--no-progress", "--learning_rate", "1e-4", "--max_steps", "2",
            "--identity_backend", "synthface-conditioning"]  # fmt: skip
    with pytest.raises(ValueError, match="--resolution 64"):
        main(parse_args(base + ["--resolution", "32"]))
    result = main(parse_args(base))
    tuned = PainControlModel.from_pretrained(result["final"]).unet.state_dict()
    shipped = PainControlModel.from_pretrained(SHIPPED).unet.state_dict()
    moved = max((tuned[k] - shipped[k]).abs().max().item() for k in shipped)
    assert 0 < moved < 0.05  # two small steps away from the shipped weights, not a new model
