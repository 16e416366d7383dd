"""Subject-independent splits, leakage checks and the scarcity plan: which people keep their
real pain frames and which synthetic pairs each (level, seed) cell adds."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from paincontrol_lib.seeds import stream

ARMS = ("real", "paincontrol", "warp", "classic")
SYNTHETIC_ARMS = ("paincontrol", "warp", "classic")


class SubjectLeakageError(ValueError):
    """A person (or a synthetic image made from or onto them) is on both sides of a split."""


# ----------------------------------------------------------------------------- splits


def subject_split(table: pd.DataFrame) -> tuple[list[str], list[str], list[str]]:
    """Training, validation and test people from the landmark table's ``split`` column
    (detected rows): detectors train on the first, choose their settings on the second and are
    scored on the third."""
    rows = table[table["detected"]]
    train, val, test = (sorted(rows.loc[rows["split"] == s, "subject"].unique())
                        for s in ("train", "val", "test"))  # fmt: skip
    if not train or not val or not test:
        raise ValueError(
            f"the landmark table needs detected train, val and test people (has {len(train)} "
            f"train, {len(val)} val, {len(test)} test): set data.val_fraction"
        )
    check_no_leakage(train, test)
    check_no_leakage(train, val)
    check_no_leakage(val, test)
    return train, val, test


def check_no_leakage(train_people, test_people, synthetic_people=()) -> None:
    """Raise :class:`SubjectLeakageError` when a test person appears in training, directly or
    as the source or target of a synthetic training image."""
    test = set(test_people)
    for what, people in (("training", train_people), ("synthetic", synthetic_people)):
        shared = sorted(set(people) & test)
        if shared:
            raise SubjectLeakageError(f"{what} data contains test people {shared}")


def pain_people(table: pd.DataFrame, people) -> list[str]:
    """The people among ``people`` with at least one detected pain frame (PSPI > 0)."""
    rows = table[table["detected"] & table["subject"].isin(list(people)) & (table["PSPI"] > 0)]
    return sorted(rows["subject"].unique())


def resolve_levels(levels, n_pain_people: int) -> list[int]:
    """Numbers of real pain people per level: ints and ``"all"``, deduplicated, ascending."""
    out = set()
    for level in levels:
        k = n_pain_people if level == "all" else level
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"scarcity level {level!r}: expected a positive integer or 'all'")
        if k > n_pain_people:
            raise ValueError(
                f"scarcity level {k} exceeds the {n_pain_people} training people with pain frames"
            )
        out.add(k)
    if not out:
        raise ValueError("no scarcity levels given")
    return sorted(out)


def seeded_rng(*key) -> np.random.Generator:
    """A generator seeded by a tuple of integers: the base seed and the draw's own keys (a name's
    :func:`text_code`, an index), for draws per named thing that :mod:`paincontrol_lib.seeds`
    has no purpose for."""
    return np.random.default_rng([int(k) for k in key])


def text_code(text: str) -> int:
    """A stable integer for a name (CRC-32; Python's ``hash`` of a str changes per process)."""
    return zlib.crc32(text.encode())


@dataclass(frozen=True)
class Cell:
    """One point of the sweep: which people's pain is real, and which synthetic pairs to add."""

    level: int
    seed: int
    pain_people: tuple[str, ...]
    pairs: tuple[tuple[str, int], ...]  # (source pain sequence, new-identity index)


def pain_sequences(table: pd.DataFrame, people) -> list[str]:
    rows = table[table["detected"] & table["subject"].isin(list(people))]
    peaks = rows.groupby("sequence")["PSPI"].max()
    return sorted(peaks[peaks > 0].index)


def plan_cells(table, train_people, levels, seeds, pairs_per_cell: int, n_targets: int,
               base_seed: int) -> list[Cell]:  # fmt: skip
    """Every (level, seed) cell. Per seed the pain people come in one seeded order (levels are
    nested); each available pain sequence goes onto ``ceil(pairs / sequences)`` new identities
    in a fixed per-sequence order, ``pairs_per_cell`` pairs in all."""
    if pairs_per_cell < 0 or n_targets < 1:
        raise ValueError("pairs_per_cell must be >= 0 and n_targets >= 1")
    candidates = pain_people(table, train_people)
    cells = []
    for seed in seeds:
        order = stream("scarcity_order", base_seed, seed).permutation(len(candidates))
        order = [candidates[i] for i in order]
        for level in resolve_levels(levels, len(candidates)):
            people = tuple(sorted(order[:level]))
            sequences = pain_sequences(table, people)
            per_sequence = min(n_targets, math.ceil(pairs_per_cell / max(1, len(sequences))))
            # Round robin over the sequences (each one's new identities in a fixed order), the
            # last round cut by a fixed per-sequence priority: balanced, and cells with the same
            # people share their synthetic images, so fewer need generating.
            ranked = []
            for sequence in sequences:
                key = text_code(sequence)
                priority = seeded_rng(base_seed, key, 1).random()
                targets = seeded_rng(base_seed, key).permutation(n_targets)[:per_sequence]
                ranked += [(rank, priority, sequence, int(t)) for rank, t in enumerate(targets)]
            ranked.sort()
            pairs = sorted((sequence, target) for *_, sequence, target in ranked[:pairs_per_cell])
            cells.append(Cell(level, seed, people, tuple(pairs)))
    return cells


def real_training_rows(table: pd.DataFrame, train_people, cell_pain_people) -> pd.DataFrame:
    """Every training person's no-pain frames plus the pain frames of ``cell_pain_people``."""
    rows = table[table["detected"] & table["subject"].isin(list(train_people))]
    return rows[(rows["PSPI"] <= 0) | rows["subject"].isin(list(cell_pain_people))]


def pair_frames(table: pd.DataFrame, sequence: str, pain_frames: int) -> pd.DataFrame:
    """The frames a pair carries: the sequence's first no-pain frame and ``pain_frames`` pain
    frames spread over its intensities (apex included)."""
    rows = table[(table["sequence"] == sequence) & table["detected"]].sort_values("frame")
    calm, pain = rows[rows["PSPI"] <= 0], rows[rows["PSPI"] > 0]
    if calm.empty or pain.empty:
        raise ValueError(f"sequence {sequence} needs a no-pain and a pain frame")
    pain = pain.sort_values(["PSPI", "frame"])
    picks = np.unique(np.linspace(len(pain) - 1, 0, min(pain_frames, len(pain))).round())
    return pd.concat([calm.iloc[:1], pain.iloc[picks.astype(int)]])
