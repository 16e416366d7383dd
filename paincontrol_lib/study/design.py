"""The blinded, randomised trial set of the realism study.

Items are transfer outputs of every method plus real held-out frames (the ``real`` condition),
balanced: the same number per condition and, within a condition, per target identity; the
generated conditions show the *same* (source frame, target) slots, so methods differ only in
how they drew them. Every image is decoded and re-encoded as a metadata-free RGB PNG of one
size under an opaque random id, so nothing a rater's browser receives (page, URL, file name,
pixel size, format) names the method.

Each rater slot gets its own random order of all items, ``repeats`` items per condition shown a
second time (test-retest; the second showing at least a quarter of the items later) and
``attention_checks`` instruction images ("press 3"; a fresh random answer and image per rater).

Folder written (atomically): ``images/<id>.png`` and ``design.json`` and ``trials.parquet``
(slot, position, image id, showing) are what the web app may read; ``key.parquet`` (id ->
condition, identity, source, PSPI, attention answer) is the secret key, read only by export,
the simulator and the analysis.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np
import pandas as pd

# The "real" condition: ground-truth frames of the dataset. On the default run these are
# SynthPain *renders*, not photographs; with data.source unbc / delaware / folder they are photos.
REAL = "real"
IMAGES = "images"
TRIALS = "trials.parquet"
KEY = "key.parquet"
INFO = "design.json"
ID_HEX = 16  # image ids: 16 hex digits (64 random bits)


def ratings_db_path(trials_dir) -> Path:
    """Where a trial set's ratings live by default: beside it, never inside the folder that a
    rebuild replaces."""
    trials_dir = Path(trials_dir)
    return trials_dir.with_name(trials_dir.name + ".sqlite")


def transfer_candidates(manifest: pd.DataFrame, transfer_dir) -> pd.DataFrame:
    """Every stage-03 output as a candidate item; ``slot`` (the file name without the method
    folder) is shared by the methods' versions of one (source frame, target); ``pspi`` is the
    PSPI the output was asked for (the source frame's, or the level asked explicitly)."""
    return pd.DataFrame({
        "condition": manifest["method"].astype(str),
        "identity": manifest["target"].astype(str),
        "slot": manifest["path"].map(lambda p: p.split("/", 1)[-1]),
        "source": manifest["source"].astype(str),
        "pspi": manifest["source_pspi"].astype(float),
        "path": [str(Path(transfer_dir) / p) for p in manifest["path"]],
        "align": None,
    })  # fmt: skip


def real_candidates(table: pd.DataFrame) -> pd.DataFrame:
    """Every detected frame of the test people (landmark table rows), to be cropped exactly like
    the transfer outputs (the canonical alignment at the output size). The real items are
    matched to the generated items' requested PSPI (:func:`_match_real`), from the target's own
    frames where they have the expression, else from another test person's."""
    rows = table[(table["split"] == "test") & table["detected"]]
    return pd.DataFrame({
        "condition": REAL,
        "identity": rows["subject"].astype(str),
        "slot": rows["image"].astype(str),
        "source": rows["subject"].astype(str),
        "pspi": rows["PSPI"].astype(float),
        "path": rows["image"].astype(str),
        "align": list(zip(rows["align_scale"], rows["align_angle"], rows["align_tx"],
                          rows["align_ty"], strict=True)),
    })  # fmt: skip


def _pixels(row, size: int) -> np.ndarray:
    """The candidate's pixels at ``size`` px: aligned crop (real frames) or resize."""
    from PIL import Image

    from paincontrol_lib.landmarks.align import Similarity, aligned_crop
    from paincontrol_lib.landmarks.image import load_image

    image = load_image(row["path"])
    if row["align"] is not None:
        return aligned_crop(image, Similarity(*row["align"]), size)
    if image.shape[:2] != (size, size):
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))
    return image


def attention_image(answer: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """An instruction image, "press <answer>", on a noisy grey ground (read at display size)."""
    from PIL import Image, ImageDraw, ImageFont

    ground = rng.normal(110, 12, (size, size, 1)).clip(0, 255).repeat(3, axis=2)
    image = Image.fromarray(ground.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    small = ImageFont.load_default(size=max(8, size // 5))
    big = ImageFont.load_default(size=max(16, size // 2))
    draw.text((size / 2, size * 0.22), "press", fill="white", font=small, anchor="mm")
    draw.text((size / 2, size * 0.62), str(answer), fill="white", font=big, anchor="mm")
    return np.asarray(image)


class _Ids:
    """Unique opaque ids: from ``secrets`` (a real study) or from the seeded generator (the
    reproducible DVC stage)."""

    def __init__(self, rng: np.random.Generator | None):
        self.rng, self.used = rng, set()

    def __call__(self) -> str:
        while True:
            new = secrets.token_hex(ID_HEX // 2) if self.rng is None else self.rng.bytes(8).hex()
            if new not in self.used:
                self.used.add(new)
                return new


def _choose(candidates: pd.DataFrame, per_identity: int, rng) -> pd.DataFrame:
    """``per_identity`` items per (condition, identity); generated conditions share slots."""
    conditions = list(dict.fromkeys(candidates["condition"]))
    generated = [c for c in conditions if c != REAL]
    if not generated:
        raise ValueError("no transfer outputs among the candidates")
    identities = sorted(set(candidates.loc[candidates["condition"].isin(generated), "identity"]))
    picked = []
    for identity in identities:
        mine = candidates[candidates["identity"] == identity]
        slot_sets = [set(mine.loc[mine["condition"] == c, "slot"]) for c in generated]
        common = sorted(set.intersection(*slot_sets))
        if len(common) < per_identity:
            raise ValueError(
                f"identity {identity}: {len(common)} outputs made by every method, "
                f"{per_identity} needed per method"
            )
        slots = set(rng.choice(common, per_identity, replace=False))
        picked.append(mine[mine["condition"].isin(generated) & mine["slot"].isin(slots)])
    chosen = pd.concat(picked, ignore_index=True)
    if REAL in conditions:
        requests = chosen[chosen["condition"] == generated[0]]
        real = candidates[candidates["condition"] == REAL].sort_values("slot")
        chosen = pd.concat([chosen, _match_real(requests, real, rng)], ignore_index=True)
    return chosen


# A real frame of another person is taken over the target's own when it is this much closer to
# the requested PSPI (points): the target's own frames first, the expression above all.
OTHER_PERSON_COST = 0.5


def _match_real(requests: pd.DataFrame, real: pd.DataFrame, rng) -> pd.DataFrame:
    """One real frame per requested item, its PSPI as close as the frames allow to the PSPI the
    item was asked for (highest requests first, since high-PSPI frames are rare; ties drawn at
    random): the real condition then shows the expressions the methods were asked to make, so
    realism is not confounded with expression."""
    if len(real) < len(requests):
        raise ValueError(f"{len(real)} real test frames for {len(requests)} items: too few")
    pspi, person = real["pspi"].to_numpy(float), real["identity"].to_numpy()
    free = np.ones(len(real), bool)
    taken = []
    for _, item in requests.sort_values("pspi", ascending=False, kind="stable").iterrows():
        cost = np.abs(pspi - item["pspi"]) + OTHER_PERSON_COST * (person != item["identity"])
        cost[~free] = np.inf
        best = np.flatnonzero(cost == cost.min())
        index = int(best[rng.integers(len(best))])
        free[index] = False
        taken.append(index)
    return real.iloc[np.sort(taken)]


def condition_pspi(key: pd.DataFrame) -> dict:
    """Per condition of a trial set's key, the PSPI of its items (mean, quartiles): the real
    items' should match the generated items' requests."""
    items = key[key["kind"] == "item"]
    return {
        str(method): {"mean": float(group.mean()), "q25": float(group.quantile(0.25)),
                      "median": float(group.median()), "q75": float(group.quantile(0.75)),
                      "max": float(group.max())}
        for method, group in items.groupby("method")["pspi"]
    }  # fmt: skip


def _order(items: pd.DataFrame, checks: list[str], repeats: int, rng) -> list[tuple[str, int]]:
    """One rater's randomised sequence of ``(image id, showing)``."""
    order = [(i, 1) for i in [*items["image_id"], *checks]]
    rng.shuffle(order)
    gap = max(3, len(items) // 4)
    again = [i for _, group in items.groupby("condition", sort=True)
             for i in rng.choice(group["image_id"].to_numpy(), repeats, replace=False)]  # fmt: skip
    for image_id in rng.permutation(again):
        first = order.index((image_id, 1))
        order.insert(int(rng.integers(min(first + gap + 1, len(order)), len(order) + 1)),
                     (image_id, 2))  # fmt: skip
    return order


def build_trial_set(
    candidates: pd.DataFrame,
    out_dir,
    *,
    items_per_method: int,
    repeats: int,
    attention_checks: int,
    n_raters: int,
    seed: int | None = None,
) -> dict:
    """Write the trial set to ``out_dir`` (replaced atomically) and return its ``design.json``.

    ``seed=None`` draws ids and orders from ``secrets`` (a real study: nobody can re-derive the
    key); a seed makes the set reproducible (the DVC stage's simulated study).
    """
    from paincontrol_lib.io import atomic_folder, save_image, write_json
    from paincontrol_lib.landmarks.image import load_image

    sizes = {"items_per_method": (items_per_method, 1), "repeats": (repeats, 0),
             "attention_checks": (attention_checks, 0), "n_raters": (n_raters, 1)}  # fmt: skip
    for name, (value, low) in sizes.items():
        if not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"study.{name} must be an integer >= {low}, got {value!r}")
    if ratings_db_path(out_dir).exists():
        raise ValueError(
            f"{ratings_db_path(out_dir)} holds ratings of the trial set in {out_dir}: rebuilding "
            "would orphan them; build into another folder or move the database away"
        )
    rng = np.random.default_rng(seed if seed is not None else secrets.randbits(128))
    new_id = _Ids(None if seed is None else rng)
    identities = sorted(set(candidates.loc[candidates["condition"] != REAL, "identity"]))
    if items_per_method % max(1, len(identities)):
        raise ValueError(
            f"study.items_per_method ({items_per_method}) must be a multiple of the "
            f"{len(identities)} target identities, to balance identities within each method"
        )
    if repeats > items_per_method:
        raise ValueError(f"study.repeats ({repeats}) exceeds items_per_method ({items_per_method})")
    items = _choose(candidates, items_per_method // len(identities), rng)
    items["image_id"] = [new_id() for _ in range(len(items))]
    items["kind"], items["expected"], items["rater_slot"] = "item", np.nan, -1
    size = int(load_image(items.loc[items["condition"] != REAL, "path"].iloc[0]).shape[0])
    checks, trials = [], []
    with atomic_folder(out_dir) as tmp:
        for _, row in items.iloc[rng.permutation(len(items))].iterrows():  # no order on disk
            save_image(tmp / IMAGES / f"{row['image_id']}.png", _pixels(row, size))
        for slot in range(n_raters):
            mine = []
            for _ in range(attention_checks):
                answer, image_id = int(rng.integers(1, 6)), new_id()
                save_image(tmp / IMAGES / f"{image_id}.png", attention_image(answer, size, rng))
                checks.append({"image_id": image_id, "kind": "attention", "expected": answer,
                               "rater_slot": slot})  # fmt: skip
                mine.append(image_id)
            for position, (image_id, showing) in enumerate(_order(items, mine, repeats, rng)):
                trials.append((slot, position, image_id, showing))
        key = pd.concat([items.drop(columns=["align", "slot", "path"]), pd.DataFrame(checks)],
                        ignore_index=True)  # fmt: skip
        key = key.rename(columns={"condition": "method"})
        key["origin"] = pd.concat([items["path"], pd.Series([None] * len(checks))],
                                  ignore_index=True)  # fmt: skip
        key.to_parquet(tmp / KEY, index=False)
        trials = pd.DataFrame(trials, columns=["slot", "position", "image_id", "showing"])
        trials.to_parquet(tmp / TRIALS, index=False)
        info = {
            "design_id": new_id() + new_id(),
            "image_size": size,
            "n_slots": n_raters,
            "n_items": len(items),
            "trials_per_rater": int(len(trials) // n_raters),
        }
        write_json(tmp / INFO, info)
    return info


def load_design(trials_dir) -> tuple[dict, pd.DataFrame]:
    """``(design.json, trials table)``: all the web app may know of a trial set."""
    import json

    trials_dir = Path(trials_dir)
    for name in (INFO, TRIALS, IMAGES):
        if not (trials_dir / name).exists():
            raise FileNotFoundError(
                f"{trials_dir / name} missing: not a trial set (paincontrol study build)"
            )
    return json.loads((trials_dir / INFO).read_text()), pd.read_parquet(trials_dir / TRIALS)


def load_key(trials_dir) -> pd.DataFrame:
    """The secret key: image id -> kind, method, identity, source, PSPI, attention answer."""
    path = Path(trials_dir) / KEY
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: the trial set's key is needed here")
    return pd.read_parquet(path)


def stage_candidates(transfer_dir, landmarks_dir) -> pd.DataFrame:
    """Candidates from the pipeline's outputs: every transfer output, and every detected frame
    of the test people (the real items are matched to the requested PSPI)."""
    from paincontrol_lib.landmarks.table import load_landmark_table
    from paincontrol_lib.transfer import load_manifest

    manifest = load_manifest(transfer_dir)
    table = load_landmark_table(landmarks_dir)
    generated = transfer_candidates(manifest, transfer_dir)
    real = real_candidates(table)
    return pd.concat([generated, real], ignore_index=True)
