"""What the augmentation generator was trained on, read from its own records, and the check that
no scarcity cell receives, through the generator, pain frames the cell's detector is denied.

A checkpoint's training data is named by the dataset it came from and the people in it:

- a checkpoint shipped with ``PROVENANCE.json`` (``pretrained/tiny-synthpain``): the SynthPain
  set its ``prepare_command`` rendered (seed and people of ``prepared.options``, training split);
- a checkpoint written by stage 02 (``training.json: arguments.landmarks_dir``): the training
  people of that landmark table, from the dataset under its images; plus, when it was fine-tuned
  (``arguments.init_from``), whatever that checkpoint was trained on.

A cell at level k may see every training person's no-pain frames and the pain frames of its k
people; ``withheld_pain_frames_seen`` counts the other training people's pain frames that are in
the generator's training data (every frame of a person it trained on counts as seen).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from paincontrol_lib.augment.cells import SubjectLeakageError, real_training_rows


@dataclass(frozen=True)
class TrainingData:
    """One dataset a generator was trained on: its identity and the people it used."""

    dataset: str  # e.g. "synthpain(seed=1)" or a real dataset's resolved root
    people: frozenset[str]
    source: str  # the record this was read from


def dataset_id(data_root) -> str:
    """The identity of a dataset: SynthPain by its generating seed (its people are a function of
    it), any other dataset by its resolved root folder."""
    config = Path(data_root) / "config.json"
    if config.is_file():
        return f"synthpain(seed={int(json.loads(config.read_text())['seed'])})"
    return str(Path(data_root).resolve())


def _synthpain_people(seed: int, identities: int, test_fraction: float) -> frozenset[str]:
    from paincontrol_lib.data.synthpain.generate import SynthPainConfig, subject_splits

    config = SynthPainConfig(seed=seed, n_identities=identities, test_fraction=test_fraction,
                             val_fraction=0.0)  # fmt: skip
    return frozenset(s for s, split in subject_splits(config).items() if split == "train")


def generator_training_data(checkpoint) -> list[TrainingData]:
    """Every dataset (and its people) the checkpoint's weights were trained on, from its
    records; raises when they do not say (a generator of unknown training data cannot be
    cleared for a scarcity experiment)."""
    checkpoint = Path(checkpoint)
    provenance = checkpoint / "PROVENANCE.json"
    if provenance.is_file():
        options = json.loads(provenance.read_text())["prepared"]["options"]
        people = _synthpain_people(options["seed"], options["identities"],
                                   options["test_fraction"])  # fmt: skip
        return [TrainingData(f"synthpain(seed={options['seed']})", people, str(provenance))]
    record = checkpoint / "training.json"
    if not record.is_file():
        raise FileNotFoundError(
            f"{checkpoint}: no PROVENANCE.json or training.json says what this generator was "
            "trained on, so it cannot be shown not to have seen withheld pain frames"
        )
    arguments = json.loads(record.read_text())["arguments"]
    if not arguments.get("landmarks_dir"):
        raise ValueError(
            f"{record}: trained on {arguments.get('examples')!r}, which names no people"
        )
    from paincontrol_lib.landmarks.table import load_landmark_table

    table = load_landmark_table(arguments["landmarks_dir"])
    train = table[(table["split"] == "train") & table["detected"]]
    root = Path(train["image"].iloc[0]).parents[2]  # <root>/images/<person>/<frame>.png
    out = [TrainingData(dataset_id(root), frozenset(train["subject"]), str(record))]
    if arguments.get("init_from"):
        out += generator_training_data(arguments["init_from"])
    return out


def withheld_pain_frames_seen(training: list[TrainingData], table: pd.DataFrame, dataset: str,
                              train_people, cell_pain_people) -> int:  # fmt: skip
    """How many pain frames the cell withholds from its detector (training people outside
    ``cell_pain_people``) belong to people the generator was trained on."""
    rows = table[table["detected"] & table["subject"].isin(list(train_people))]
    allowed = real_training_rows(table, train_people, cell_pain_people)
    withheld = rows[~rows.index.isin(allowed.index) & (rows["PSPI"] > 0)]
    seen = set().union(*(t.people for t in training if t.dataset == dataset))
    return int(withheld["subject"].isin(seen).sum())


def check_cells(training, table, dataset, train_people, cells) -> int:
    """Raise :class:`SubjectLeakageError` when any cell's generator saw a withheld pain frame;
    returns the total (0)."""
    total = 0
    for cell in cells:
        seen = withheld_pain_frames_seen(training, table, dataset, train_people, cell.pain_people)
        if seen:
            raise SubjectLeakageError(
                f"the generator was trained on {seen} pain frames that cell (level {cell.level}, "
                f"seed {cell.seed}) withholds from its detector: use a generator not trained on "
                "this dataset's training people (augment.generator)"
            )
        total += seen
    return total
