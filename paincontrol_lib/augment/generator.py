"""What the augmentation generator was trained on, read from its own records, and the check that
no scarcity cell receives, through the generator, pain frames the cell's detector is denied.

A checkpoint's training data is named by the people in it, so that they are recognised under
any path or folder name:

- a checkpoint shipped with ``PROVENANCE.json`` (``pretrained/tiny-synthpain``): the SynthPain
  set its ``prepare_command`` rendered (seed and people of ``prepared.options``, training split).
  A rendered person is a function of the seed and their subject id, so that pair names them as
  exactly as a hash of their frames would, without rendering a thousand people to hash them;
- a checkpoint written by stage 02 (``training.json: arguments.landmarks_dir``): the training
  people of that landmark table with the SHA-256 of every frame file they contributed, and the
  dataset under its images (a SynthPain seed, else its resolved folder); plus, when it was
  fine-tuned (``arguments.init_from``), whatever that checkpoint was trained on.

A cell at level k may see every training person's no-pain frames and the pain frames of its k
people; ``withheld_pain_frames_seen`` counts the other training people's pain frames that are in
the generator's training data (every frame of a person it trained on counts as seen). A person
was trained on (:func:`people_seen`) when the dataset identity and subject id match, or when any
of their frame files has the same bytes as one the generator trained on: a copy of the dataset
at another path, or under other folder names, is the same people. A re-encoded or resized copy
has other bytes and is not recognised.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pandas as pd

from paincontrol_lib.augment.cells import SubjectLeakageError, real_training_rows
from paincontrol_lib.io import file_digest


@dataclass(frozen=True)
class TrainingData:
    """One dataset a generator was trained on: its identity, the people it used and, for data
    on disk, the SHA-256 of each of their frame files."""

    dataset: str  # e.g. "synthpain(seed=1)" or a real dataset's resolved root
    people: frozenset[str]
    source: str  # the record this was read from
    frames: frozenset[str] = frozenset()  # empty for SynthPain people rendered on demand


def dataset_id(data_root) -> str:
    """The identity of a dataset: SynthPain by its generating seed (its people are a function of
    it), any other dataset by its resolved root folder."""
    config = Path(data_root) / "config.json"
    if config.is_file():
        return f"synthpain(seed={int(json.loads(config.read_text())['seed'])})"
    return str(Path(data_root).resolve())


def frame_hashes(images) -> list[str]:
    """SHA-256 of each image file's bytes (remembered per file while it is unchanged, so the
    generator's frames and the same frames in stage 05's table are read once)."""
    out = []
    for image in images:
        path = Path(image).resolve()
        stat = path.stat()
        out.append(_file_sha256(path, stat.st_size, stat.st_mtime_ns))
    return out


@cache
def _file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    """``file_digest``, remembered per (path, size, modification time): a changed file is
    read again."""
    return file_digest(path)


def _synthpain_people(seed: int, identities: int, test_fraction: float) -> frozenset[str]:
    from paincontrol_lib.data.synthpain.generate import SynthPainConfig, subject_splits

    config = SynthPainConfig(seed=seed, n_identities=identities, test_fraction=test_fraction,
                             val_fraction=0.0)  # fmt: skip
    return frozenset(s for s, split in subject_splits(config).items() if split == "train")


def _data_root(landmarks_dir) -> Path:
    """The data folder a landmark table's images lie under (stored relative to the table)."""
    from paincontrol_lib.landmarks.table import LANDMARK_TABLE

    stored = pd.read_parquet(Path(landmarks_dir) / LANDMARK_TABLE, columns=["data_root"])
    return Path(os.path.normpath(Path(landmarks_dir) / stored["data_root"].iloc[0]))


def generator_training_data(checkpoint) -> list[TrainingData]:
    """Every dataset (and its people) the checkpoint's weights were trained on, from its
    records; raises when they do not say (a generator of unknown training data cannot be
    cleared for a scarcity experiment)."""
    checkpoint = Path(checkpoint)
    provenance = checkpoint / "PROVENANCE.json"
    if provenance.is_file():
        record = json.loads(provenance.read_text())
        # the generator's pretraining people, then its identity adapter's (model/identity_adapter)
        populations = [record["prepared"]["options"]]
        if "identity_adapter" in record:
            populations.append(record["identity_adapter"]["people"])
        return [
            TrainingData(
                f"synthpain(seed={options['seed']})",
                _synthpain_people(options["seed"], options["identities"],
                                  options["test_fraction"]),
                str(provenance),
            )
            for options in populations
        ]  # fmt: skip
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
    try:
        frames = frozenset(frame_hashes(train["image"]))
    except OSError as exc:
        raise FileNotFoundError(
            f"{record}: cannot read the frames this generator was trained on ({exc}); its "
            "people are recognised by their frames' contents, so they must be readable"
        ) from exc
    dataset = dataset_id(_data_root(arguments["landmarks_dir"]))
    out = [TrainingData(dataset, frozenset(train["subject"]), str(record), frames)]
    if arguments.get("init_from"):
        out += generator_training_data(arguments["init_from"])
    return out


def people_seen(training: list[TrainingData], table: pd.DataFrame, dataset: str,
                people) -> frozenset[str]:  # fmt: skip
    """The ``people`` of ``table`` (from ``dataset``) the generator was trained on: the same
    dataset identity and subject id, or a frame file with the same bytes (read only when the
    generator's records hold frame hashes)."""
    people = set(people)
    seen = {p for t in training if t.dataset == dataset for p in t.people & people}
    trained_frames = frozenset().union(*(t.frames for t in training))
    if trained_frames:
        rows = table[table["subject"].isin(people)]
        same_bytes = [h in trained_frames for h in frame_hashes(rows["image"])]
        seen |= set(rows.loc[same_bytes, "subject"])
    return frozenset(seen)


def withheld_pain_frames_seen(seen: frozenset[str], table: pd.DataFrame, train_people,
                              cell_pain_people) -> int:  # fmt: skip
    """How many pain frames the cell withholds from its detector (training people outside
    ``cell_pain_people``) belong to people the generator was trained on (``seen``, from
    :func:`people_seen`)."""
    rows = table[table["detected"] & table["subject"].isin(list(train_people))]
    allowed = real_training_rows(table, train_people, cell_pain_people)
    withheld = rows[~rows.index.isin(allowed.index) & (rows["PSPI"] > 0)]
    return int(withheld["subject"].isin(seen).sum())


def check_cells(training, table, dataset, train_people, cells) -> int:
    """Raise :class:`SubjectLeakageError` when any cell's generator saw a withheld pain frame;
    returns the total (0)."""
    seen = people_seen(training, table, dataset, train_people)
    total = 0
    for cell in cells:
        n_seen = withheld_pain_frames_seen(seen, table, train_people, cell.pain_people)
        if n_seen:
            raise SubjectLeakageError(
                f"the generator was trained on {n_seen} pain frames that cell (level "
                f"{cell.level}, seed {cell.seed}) withholds from its detector: use a generator "
                "not trained on this dataset's training people (augment.generator)"
            )
        total += n_seen
    return total
