"""The ``pixels`` AU backend: FACS intensities read from the pixels of an aligned face crop beside
the person's neutral crop, by a small CNN in torch.

Why. The ``mesh`` and ``learned`` backends read MediaPipe's mesh, which cannot see what the
SynthPain renderer (and a real face) draws besides geometry: furrows, wrinkles, bulges, lid skin.
And they were trained on frames that rarely reach the intensities the evaluation asks for, so
their error on the exact answers of strong requests was 2-4x their test error. This reader sees
the appearance, is trained across the whole 0-5 range, and is differentiable
(:class:`PixelAUNet` maps float tensors to intensities), so a sampler can be guided with it.

Two training steps, so that every number stays honest:

1. **Shipped weights** (``pretrained/au-readers/<role>``, ``make au-readers``): renders of
   *fresh* SynthPain identities (seed :data:`FRESH_SEED`: none of them is a person of the
   dataset, the model's pretraining, the augmentation or the identity encoder) with pain AUs
   spread evenly over 0-5 (AU43 0/1), each beside its neutral frame, crops degraded at random as
   generated outputs are (``au_reading.learned.degrade``); the step kept is chosen on held-out fresh
   identities. They never saw a person of the dataset.
2. **In the pipeline** (stage 04, :func:`fine_tune`): the ``scoring`` reader is fine-tuned on the
   dataset's *training* people; the step kept (0: the shipped weights) is chosen on *validation*
   people and the reader is reported on *test* people (``au_reading.backends.validate_backends``).

Two readers are trained independently (different seeds, disjoint fresh identities):
``scoring`` scores methods in stage 04; ``guide`` is shipped for guiding a sampler and never
scores anything (the instrument that guides a method is never the one that judges it).

Inputs are uint8 RGB crops in the canonical frame (``landmarks.align.aligned_crop``) of any
size, read at :data:`INPUT` px; outputs are on the FACS scale (0-5, AU43 0-1).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from paincontrol_lib.au_reading.learned import CLEAN_SIZE, degrade
from paincontrol_lib.data.records import AU_COLUMNS
from paincontrol_lib.facs import BINARY_AUS, PAIN_AUS, pspi
from paincontrol_lib.seeds import stream
from paincontrol_lib.stats import icc_2_1

INPUT = 64  # px the network reads (the tiny generator's output size)
FACE = slice(8, 56)  # the central 48 px it looks at: the whole face (forehead to chin spans
# rows 13-51 of the canonical frame) for half the compute of the full crop
# SynthPain seed of the fresh identities: not 0 (the dataset), 1 (pretraining), 7 (augmentation)
FRESH_SEED = 13
ROLES = {  # each reader's weight seed and its own, disjoint block of fresh identity indices
    "scoring": {"seed": 0, "first_identity": 0},
    "guide": {"seed": 1, "first_identity": 100_000},
}
SCALE = np.array([1.0 if au in BINARY_AUS else 5.0 for au in PAIN_AUS], np.float32)
SHIPPED = Path(__file__).resolve().parents[2] / "pretrained" / "au-readers"
TRAINING_COPIES = 3  # degraded copies of each fresh training crop
RENDER_CHUNK = 50  # fresh identities rendered (and cached) at a time
ARCHITECTURE = "pixel-au-v1"  # bump when PixelAUNet changes: old weights then refuse to load


def _block(cin: int, cout: int):
    import torch.nn as nn

    return [nn.Conv2d(cin, cout, 3, 2, 1), nn.GroupNorm(8, cout), nn.SiLU()]


def _module_class():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class PixelAUNet(nn.Module):
        """(crops, neutral crops) float (B, 3, H, W) in [0, 1] -> pain-AU intensities (B, 6) on
        the FACS scale, unclipped so that gradients flow everywhere. The crop and its
        difference from the neutral crop are read together: the person's own face is the
        reference, as a FACS coder's."""

        def __init__(self):
            super().__init__()
            self.trunk = nn.Sequential(
                *_block(6, 32), *_block(32, 64), *_block(64, 96), *_block(96, 128),  # 48 -> 3
                nn.Flatten(), nn.Dropout(0.1), nn.Linear(128 * 9, 128), nn.SiLU(),
                nn.Linear(128, len(PAIN_AUS)),
            )  # fmt: skip
            self.register_buffer("scale", torch.from_numpy(SCALE))

        def forward(self, crops, neutrals):
            if crops.shape[-1] != INPUT:
                crops = F.interpolate(crops, (INPUT, INPUT), mode="bilinear", antialias=True)
            if neutrals.shape[-1] != INPUT:
                neutrals = F.interpolate(neutrals, (INPUT, INPUT), mode="bilinear",
                                         antialias=True)  # fmt: skip
            x = torch.cat([crops - 0.5, crops - neutrals], 1)[..., FACE, FACE]
            return self.trunk(x) * self.scale

    return PixelAUNet


def network(seed: int = 0):
    """A freshly initialised :class:`PixelAUNet` (weights from ``seed``)."""
    import torch

    torch.manual_seed(seed)
    return _module_class()()


def resize(crops: np.ndarray, size: int = INPUT) -> np.ndarray:
    """uint8 crops (n, h, w, 3) at ``size`` px (bicubic, as ``landmarks.image.upscale``)."""
    from PIL import Image

    crops = np.asarray(crops)
    if crops.shape[1] == size:
        return crops
    return np.stack([np.asarray(Image.fromarray(c).resize((size, size), Image.Resampling.BICUBIC))
                     for c in crops])  # fmt: skip


def as_tensor(crops: np.ndarray):
    """uint8 (n, h, w, 3) -> float (n, 3, INPUT, INPUT) in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(resize(crops))).permute(0, 3, 1, 2).float() / 255


@dataclass
class PixelAU:
    """A trained pixel reader: :meth:`read` for tables, ``net`` for gradients; ``record`` says
    what it was trained on."""

    net: object  # PixelAUNet
    record: dict = field(default_factory=dict)

    def predict(self, crops: np.ndarray, neutral_crops: np.ndarray) -> np.ndarray:
        """(n, 6) pain-AU intensities, clipped to the FACS range."""
        import torch

        crops, neutral_crops = np.asarray(crops), np.asarray(neutral_crops)
        if crops.shape != neutral_crops.shape or crops.ndim != 4 or crops.shape[-1] != 3:
            raise ValueError(
                f"crops {crops.shape} and neutral crops {neutral_crops.shape}: need matching "
                "(n, h, w, 3) uint8"
            )
        self.net.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(crops), 256):
                batch = self.net(
                    as_tensor(crops[i : i + 256]), as_tensor(neutral_crops[i : i + 256])
                )
                out.append(batch.numpy())
        raw = np.concatenate(out) if out else np.zeros((0, len(PAIN_AUS)))
        return np.clip(raw, 0, SCALE)

    def read(self, crops: np.ndarray, neutral_crops: np.ndarray) -> pd.DataFrame:
        """AU table (``AU_COLUMNS`` + PSPI): the pain AUs read, every other AU NaN."""
        table = pd.DataFrame(np.nan, index=range(len(crops)), columns=list(AU_COLUMNS))
        table[list(PAIN_AUS)] = self.predict(crops, neutral_crops)
        table["PSPI"] = pspi(table[list(PAIN_AUS)])
        return table

    def reads(self, faces) -> pd.DataFrame:
        """:meth:`read` of ``au_reading.learned.Faces`` (the interface every backend shares)."""
        return self.read(faces.crops, faces.neutral_crops)

    def save(self, folder) -> Path:
        """``reader.safetensors`` + ``reader.json`` (architecture and record) in ``folder``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, folder / "reader.safetensors")
        meta = {"architecture": ARCHITECTURE, "aus": list(PAIN_AUS), "input_px": INPUT,
                "record": self.record}  # fmt: skip
        (folder / "reader.json").write_text(json.dumps(meta, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder) -> PixelAU:
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / "reader.safetensors").is_file():
            raise FileNotFoundError(
                f"{folder}: no pixel AU reader here (reader.safetensors); `make au-readers` "
                "trains the shipped ones"
            )
        meta = json.loads((folder / "reader.json").read_text())
        if meta["architecture"] != ARCHITECTURE:
            raise ValueError(f"{folder}: weights of {meta['architecture']}, this code reads "
                             f"{ARCHITECTURE}; retrain with `make au-readers`")  # fmt: skip
        net = network()
        net.load_state_dict(load_file(folder / "reader.safetensors"))
        net.eval()
        return cls(net, meta["record"])


# ----------------------------------------------------------------------------- training data


@dataclass
class Examples:
    """Training or validation images: each expression crop (``CLEAN_SIZE`` px, the source of its
    clean and degraded readings) with the index of its person's neutral crop and its AUs."""

    crops: np.ndarray  # (n, CLEAN_SIZE, CLEAN_SIZE, 3) uint8
    neutral_crops: np.ndarray  # (m, CLEAN_SIZE, CLEAN_SIZE, 3) uint8, one per person
    person: np.ndarray  # (n,) index into neutral_crops
    targets: np.ndarray  # (n, 6) pain AUs, FACS scale
    people: np.ndarray = None  # (m,) person labels

    def __post_init__(self):
        if self.people is None:
            self.people = np.arange(len(self.neutral_crops))

    def __len__(self) -> int:
        return len(self.crops)

    def subset(self, people) -> Examples:
        """The examples of the persons at ``people`` (indices into ``neutral_crops``)."""
        people = np.asarray(people)
        keep = np.isin(self.person, people)
        remap = np.full(len(self.neutral_crops), -1)
        remap[people] = np.arange(len(people))
        return Examples(self.crops[keep], self.neutral_crops[people], remap[self.person[keep]],
                        self.targets[keep], self.people[people])  # fmt: skip

    def degraded(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(degraded crops, their neutral crops at ``INPUT`` px): one fixed degraded copy of
        every crop (``seeds.stream("au_degradation", seed)``), the generator's output beside
        the person's undegraded photo."""
        rng = stream("au_degradation", seed)
        crops = np.stack([degrade(c, rng, INPUT) for c in self.crops])
        return crops, resize(self.neutral_crops)[self.person]

    def clean(self) -> tuple[np.ndarray, np.ndarray]:
        return resize(self.crops), resize(self.neutral_crops)[self.person]

    @staticmethod
    def concat(parts) -> Examples:
        offsets = np.cumsum([0, *(len(p.neutral_crops) for p in parts[:-1])])
        return Examples(np.concatenate([p.crops for p in parts]),
                        np.concatenate([p.neutral_crops for p in parts]),
                        np.concatenate([p.person + o for p, o in zip(parts, offsets, strict=True)]),
                        np.concatenate([p.targets for p in parts]),
                        np.concatenate([p.people for p in parts]))  # fmt: skip

    def save(self, path) -> Path:
        import io

        from paincontrol_lib.io import atomic_write_bytes

        buffer = io.BytesIO()
        np.savez(buffer, crops=self.crops, neutral_crops=self.neutral_crops, person=self.person,
                 targets=self.targets, people=self.people)  # fmt: skip
        return atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path) -> Examples:
        with np.load(path) as data:
            return cls(**{k: data[k] for k in data.files})


def draw_fresh_aus(rng: np.random.Generator) -> dict[str, float]:
    """One training expression: pain AUs each present with probability 0.8 at an intensity
    uniform over 0-5 (AU43 present with probability 0.5), 15 % of them pain-free; a third with
    a non-pain distractor (smile, brow raise, talking, surprise) on top."""
    from paincontrol_lib.data.synthpain.expressions import DISTRACTORS

    aus = {}
    if rng.random() >= 0.15:
        aus = {au: float(rng.uniform(0, 5)) * (rng.random() < 0.8) for au in PAIN_AUS[:-1]}
        aus["AU43"] = float(rng.random() < 0.5)
    if rng.random() < 1 / 3:
        name = list(DISTRACTORS)[rng.integers(len(DISTRACTORS))]
        aus |= {au: float(rng.uniform(lo, hi)) for au, (lo, hi) in DISTRACTORS[name].items()}
    return aus


def _render_people(job) -> list:
    """Worker: fresh identities ``indices`` rendered by :func:`render_fresh`'s recipe."""
    from paincontrol_lib.au_to_mesh import default_model
    from paincontrol_lib.data.synthpain.identity import sample_identity
    from paincontrol_lib.data.synthpain.render import Renderer
    from paincontrol_lib.landmarks.align import align, aligned_crop
    from paincontrol_lib.landmarks.mesher import FaceMesher

    indices, n_expressions = job
    people = []
    with FaceMesher() as mesher:
        for index in indices:
            # SynthPain's defaults, appearance on; a renderer of its own for each person, so
            # that its texture caches (megabytes a person) go with it
            renderer = Renderer(default_model(), CLEAN_SIZE, 0.6, 2, True)
            rng = stream("au_reader_renders", FRESH_SEED, index)
            identity = sample_identity(renderer.model, FRESH_SEED, index)
            photo = renderer.render(identity, {}, rng=rng).image
            found = mesher(photo)
            if not found.detected:
                continue
            photo_transform = align(found.landmarks)[1]
            crops, targets = [], []
            for _ in range(n_expressions):
                aus = draw_fresh_aus(rng)
                # half at the photo's pose and cropped like an exact answer (the photo's
                # alignment), half moved a little and aligned on their own mesh like a frame
                moved = rng.random() < 0.5
                jitter = rng.uniform(-2, 2, 3) if moved else np.zeros(3)
                image = renderer.render(identity, aus, pose_jitter=jitter,
                                        rng=rng if rng.random() < 0.5 else None).image  # fmt: skip
                transform = photo_transform
                if moved:
                    own = mesher(image)
                    transform = align(own.landmarks)[1] if own.detected else photo_transform
                crops.append(aligned_crop(image, transform, CLEAN_SIZE))
                targets.append([aus.get(au, 0.0) for au in PAIN_AUS])
            people.append((index, aligned_crop(photo, photo_transform, CLEAN_SIZE),
                           np.stack(crops), np.array(targets, np.float32)))  # fmt: skip
    return people


def render_fresh(first_identity: int, n_identities: int, n_expressions: int,
                 workers: int = 1) -> Examples:  # fmt: skip
    """Fresh SynthPain identities ``first_identity ...`` (seed :data:`FRESH_SEED`), each a
    neutral photo and ``n_expressions`` expressions from :func:`draw_fresh_aus`, as aligned
    crops. Deterministic per identity, whatever ``workers`` is; identities MediaPipe cannot
    mesh are left out."""
    indices = np.arange(first_identity, first_identity + n_identities)
    jobs = [(list(map(int, chunk)), n_expressions)
            for chunk in np.array_split(indices, max(1, workers)) if len(chunk)]  # fmt: skip
    if len(jobs) > 1:
        from paincontrol_lib.parallel import process_pool

        with process_pool(len(jobs)) as pool:
            parts = list(pool.map(_render_people, jobs))
    else:
        parts = [_render_people(jobs[0])]
    people = [p for part in parts for p in part]
    return Examples(
        crops=np.concatenate([p[2] for p in people]),
        neutral_crops=np.stack([p[1] for p in people]),
        person=np.repeat(np.arange(len(people)), [len(p[2]) for p in people]),
        targets=np.concatenate([p[3] for p in people]),
        people=np.array([p[0] for p in people]),
    )


# ----------------------------------------------------------------------------- training


@dataclass
class Views:
    """What training samples from: every crop clean and as ``len(degraded)`` degraded copies,
    all at ``INPUT`` px, with the neutral crops; degraded once, not at every step."""

    clean: np.ndarray  # (n, INPUT, INPUT, 3)
    degraded: list  # of (n, INPUT, INPUT, 3)
    neutral: np.ndarray  # (m, INPUT, INPUT, 3)
    person: np.ndarray  # (n,)
    targets: np.ndarray  # (n, 6)

    @classmethod
    def of(cls, examples: Examples, copies: int, seed: int) -> Views:
        """``examples`` clean and with ``copies`` degraded copies (``au_degradation`` stream
        under ``seed`` and the copy number)."""
        degraded = []
        for copy in range(copies):
            rng = stream("au_degradation", seed, copy)
            degraded.append(np.stack([degrade(c, rng, INPUT) for c in examples.crops]))
        return cls(resize(examples.crops), degraded, resize(examples.neutral_crops),
                   examples.person, examples.targets)  # fmt: skip

    @classmethod
    def of_table(cls, reads, mask: np.ndarray) -> Views:
        """The landmark-table rows in ``mask`` (``au_reading.learned.TableReads``): clean and every
        degraded copy but the last (which validation and test read)."""
        targets = reads.rows[list(PAIN_AUS)].to_numpy(np.float32)[mask]
        return cls(resize(reads.crops[mask]), [d[mask] for d in reads.degraded_crops[:-1]],
                   resize(reads.neutral_crops[mask]), np.arange(int(mask.sum())),
                   np.nan_to_num(targets))  # fmt: skip

    def __len__(self) -> int:
        return len(self.clean)

    def batch(self, rows: np.ndarray, rng: np.random.Generator):
        """Crops (clean or one of the degraded copies, equally likely), shifted by up to 2 px
        against their neutral half the time, each pair mirrored half the time."""
        choice = rng.integers(0, 1 + len(self.degraded), len(rows))
        crops = np.stack([self.clean[i] if c == 0 else self.degraded[c - 1][i]
                          for i, c in zip(rows, choice, strict=True)])  # fmt: skip
        for j in np.flatnonzero(rng.random(len(rows)) < 0.5):
            crops[j] = np.roll(crops[j], tuple(rng.integers(-2, 3, 2)), (0, 1))
        neutrals = self.neutral[self.person[rows]]
        flip = rng.random(len(rows)) < 0.5
        crops[flip], neutrals[flip] = crops[flip, :, ::-1], neutrals[flip, :, ::-1]
        return crops, neutrals


def mean_pain_icc(reader: PixelAU, crops, neutrals, targets) -> float:
    """Mean over the pain AUs of ICC(2,1) (absolute agreement) against ``targets``: the
    selection score, where a reader's bias counts against it."""
    read = reader.predict(crops, neutrals)
    values = [icc_2_1(targets[:, j], read[:, j]) for j in range(len(PAIN_AUS))]
    return float(np.mean([-1.0 if v is None else v for v in values]))


def train(reader: PixelAU, views: Views, steps: int, seed: int, validate=None,
          eval_every: int = 500, learning_rate: float = 2e-3, batch_size: int = 64,
          threads: int = 2, log=None) -> tuple[PixelAU, list[dict]]:  # fmt: skip
    """Train ``reader`` (in place) ``steps`` AdamW steps on ``views`` (cosine schedule, 5 %
    warm-up), scoring ``validate(reader) -> float`` (higher is better) at step 0 and every
    ``eval_every`` steps; returns the reader at the best-scoring step (0: as it came) and the
    curve. ``seeds.stream("au_reader_fit", seed)`` draws the batches."""
    import copy
    import math

    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        rng = stream("au_reader_fit", seed)
        targets = torch.from_numpy(views.targets.astype(np.float32) / SCALE)
        opt = torch.optim.AdamW(reader.net.parameters(), lr=learning_rate, weight_decay=1e-4)
        warm = max(1, steps // 20)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * s / steps))
        )
        curve = []
        best = (-np.inf, 0, None)

        def check(step):
            nonlocal best
            if validate is None:
                return
            score = validate(reader)
            curve.append({"step": step, "val_score": score})
            if log:
                log(f"step {step}: val {score:.4f}")
            if score > best[0]:
                best = (score, step, copy.deepcopy(reader.net.state_dict()))

        check(0)
        for step in range(1, steps + 1):
            reader.net.train()
            rows = rng.integers(0, len(views), batch_size)
            crops, neutrals = views.batch(rows, rng)
            predicted = reader.net(as_tensor(crops), as_tensor(neutrals)) / reader.net.scale
            loss = torch.nn.functional.smooth_l1_loss(predicted, targets[rows], beta=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
            if step % eval_every == 0 or step == steps:
                check(step)
        if best[2] is not None:
            reader.net.load_state_dict(best[2])
        reader.net.eval()
        reader.record["steps_run"] = steps
        reader.record["step_kept"] = best[1] if validate else steps
        return reader, curve
    finally:
        torch.set_num_threads(previous)


def fine_tune(reader: PixelAU, views: Views, people, validate, steps: int, seed: int,
              eval_every: int, learning_rate: float, batch_size: int,
              threads: int = 2) -> tuple[PixelAU, list[dict]]:  # fmt: skip
    """Stage 04's step: ``reader`` (the shipped weights) fine-tuned on ``views`` of the
    dataset's training ``people``, the step kept chosen by ``validate`` on validation people
    (0 keeps the shipped weights)."""
    shipped = dict(reader.record)
    reader, curve = train(reader, views, steps, seed, validate, eval_every, learning_rate,
                          batch_size, threads)  # fmt: skip
    reader.record = {
        "shipped": shipped,
        "fine_tuned_on": "train",
        "fine_tune_people": sorted(map(str, people)),
        "fine_tune_images": len(views),
        "steps_run": steps,
        "step_kept": reader.record["step_kept"],
    }
    return reader, curve


# ----------------------------------------------------------------------------- make au-readers


def fresh_examples(role: str, identities: int, expressions: int, workers: int = 1,
                   cache: Path | None = None) -> Examples:  # fmt: skip
    """:func:`render_fresh` of ``role``'s block of identities, :data:`RENDER_CHUNK` at a time,
    each chunk kept in ``cache`` (a rerun, or the other role's run, reuses it)."""
    parts = []
    for first in range(0, identities, RENDER_CHUNK):
        start, n = ROLES[role]["first_identity"] + first, min(RENDER_CHUNK, identities - first)
        chunk = Path(cache) / f"renders-{start}-{n}x{expressions}.npz" if cache else None
        if chunk and chunk.is_file():
            parts.append(Examples.load(chunk))
            continue
        parts.append(render_fresh(start, n, expressions, workers))
        if chunk:
            parts[-1].save(chunk)
    return Examples.concat(parts)


def publish(role: str, out: Path, identities: int, expressions: int, val_fraction: float,
            steps: int, workers: int, cache: Path | None = None,
            threads: int = 2) -> dict:  # fmt: skip
    """Render, train and save the shipped ``role`` reader with its PROVENANCE.json."""
    from paincontrol_lib.io import write_json

    spec = ROLES[role]
    started = time.perf_counter()
    examples = fresh_examples(role, identities, expressions, workers, cache)
    render_minutes = (time.perf_counter() - started) / 60
    n_val = max(1, int(round(val_fraction * len(examples.neutral_crops))))
    people = np.arange(len(examples.neutral_crops))
    fit, held = examples.subset(people[:-n_val]), examples.subset(people[-n_val:])
    val_crops, val_neutrals = held.degraded(spec["seed"])

    def validate(reader):
        return mean_pain_icc(reader, val_crops, val_neutrals, held.targets)

    reader = PixelAU(network(spec["seed"]), {})
    trained = time.perf_counter()
    views = Views.of(fit, TRAINING_COPIES, spec["seed"])
    reader, curve = train(reader, views, steps, spec["seed"], validate, threads=threads, log=print)
    clean = held.clean()
    scores = {}
    for name, (crops, neutrals) in (("clean", clean), ("degraded", (val_crops, val_neutrals))):
        read = reader.predict(crops, neutrals)
        scores[name] = {
            au: {"icc_a1": icc_2_1(held.targets[:, j], read[:, j]),
                 "mae": float(np.abs(held.targets[:, j] - read[:, j]).mean())}
            for j, au in enumerate(PAIN_AUS)
        }  # fmt: skip
    reader.record = {
        "role": role,
        "trained_on": "fresh SynthPain identities only (never a person of any dataset split)",
        "fresh_seed": FRESH_SEED,
        "identity_indices": [int(examples.people.min()), int(examples.people.max())],
        "n_identities": int(len(fit.neutral_crops)),
        "n_images": int(len(fit)),
        "weight_seed": spec["seed"],
        "step_kept": reader.record["step_kept"],
    }
    reader.save(out)
    try:
        import subprocess

        revision = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                  check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        revision = None
    provenance = {
        "role": role,
        "code_revision": revision,
        "command": f"python -m paincontrol_lib.au_reading.pixels --role {role} --out {out} "
        f"--identities {identities} --expressions {expressions} --val-fraction {val_fraction} "
        f"--steps {steps} --threads {threads}",
        "data": {
            "fresh_seed": FRESH_SEED,
            "identity_indices": [int(examples.people.min()), int(examples.people.max())],
            "n_identities_meshed": int(len(examples.neutral_crops)),
            "n_identities_train": int(len(fit.neutral_crops)),
            "n_identities_val": int(len(held.neutral_crops)),
            "expressions_per_identity": expressions,
            "n_images_train": int(len(fit)),
            "aus": "pain AUs present w.p. 0.8, uniform 0-5; AU43 0/1 w.p. 0.5; 15 % pain-free; "
            "a third with a distractor (smile, brow raise, talk, surprise)",
            "renders": f"render_fresh, {RENDER_CHUNK} identities a chunk, kept in {cache} and "
            "reused when present (the renders are deterministic per identity)",
            "renders_sha256": _digest(examples),
            "render_or_load_minutes": render_minutes,
        },
        "training": {
            "steps": steps,
            "step_kept": reader.record["step_kept"],
            "rule": "max mean pain-AU ICC(2,1) on degraded crops of the held-out fresh identities",
            "curve": curve,
            "minutes": (time.perf_counter() - trained) / 60,
            "weight_seed": spec["seed"],
        },
        "held_out_fresh_identities": scores,
    }
    write_json(Path(out) / "PROVENANCE.json", provenance)
    return provenance


def _digest(examples: Examples) -> str:
    """sha256 of the renders (crops, neutral crops, AUs): the same command gives the same."""
    import hashlib

    digest = hashlib.sha256()
    for array in (examples.crops, examples.neutral_crops, examples.targets, examples.people):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m paincontrol_lib.au_reading.pixels",
        description="Render fresh SynthPain identities and train a shipped pixel AU reader.",
    )
    parser.add_argument("--role", choices=sorted(ROLES), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--identities", type=int, default=600)
    parser.add_argument("--expressions", type=int, default=8)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path("build/au-readers"))
    args = parser.parse_args(argv)
    publish(args.role, args.out, args.identities, args.expressions, args.val_fraction,
            args.steps, args.workers, args.cache, args.threads)  # fmt: skip


if __name__ == "__main__":
    main()
