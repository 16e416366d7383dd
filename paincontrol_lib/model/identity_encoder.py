"""How SynthPain's identity encoder is made (``make identity-encoder``): its weights are shipped in
``pretrained/identity-encoder/`` and this module rebuilds them by steps, from nothing::

    python -m paincontrol_lib.model.identity_encoder --out pretrained/identity-encoder

1. Render (about 30 CPU minutes, shared by ``--workers`` processes): ``n_identities`` SynthPain
   people of ``seed`` 29, a seed no stage uses (the dataset's people are seed 0, the shipped
   generator's pretraining seed 1, the augmentation's new people seed 7, the pixel AU readers'
   seed 13), ``frames`` each. Every frame varies what is not identity:
   head pose (up to 8/6/6 degrees yaw/pitch/roll beyond the person's own), lighting (the
   person's light replaced by a fresh draw, 60 % of frames), the backdrop, hair and clothes
   (replaced, 50 %) and the expression (80 %: pain or non-pain apexes at a random intensity, so
   AU4, AU6, AU7, AU9, AU10 and AU43 are among them and identity must survive them). The face
   itself (mesh, skin, brows, lashes, lips, irises, wrinkles) is the person's own. Kept in
   ``--work`` (``build/identity-encoder/``), reused by a rerun with the same settings.
2. Train (about 30 CPU minutes on one thread): :func:`paincontrol_lib.identity.identity_network`
   on :func:`~paincontrol_lib.identity.face_crop` crops made from the renders' true meshes, a
   CosFace margin loss (Wang et al. 2018: cosine logits scaled by ``scale``, ``margin`` taken off
   the true class) over the training people, AdamW with warm-up and cosine decay, ``steps`` steps of
   ``batch_size``. Each crop is augmented the way outputs differ from photos: the mesh jittered
   (MediaPipe's error: a small similarity and per-point noise), the image shrunk and upscaled to
   192 px as generated 64 px faces are before they are meshed, blur, noise, JPEG, brightness.
3. Check and publish: the last ``n_monitor`` rendered people never train; their verification AUC
   and top-1 are printed and recorded (they choose nothing: the budget is fixed steps), then the
   weights, ``encoder.json`` (the architecture) and ``PROVENANCE.json`` are written atomically.

Everything is drawn from ``seeds.stream`` purposes ``identity_encoder_frames`` (renders) and
``identity_encoder_training`` (batches, augmentation), and torch is seeded and runs one thread,
so the same command on the same wheels makes the same weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from paincontrol_lib.identity import (
    ENCODER_CONFIG,
    ENCODER_DIR,
    ENCODER_WEIGHTS,
    FACE_CROP,
    crop_tensor,
    encode,
    face_crop,
    identity_network,
    verification,
)
from paincontrol_lib.landmarks.image import UPSCALE
from paincontrol_lib.seeds import stream

SEED = 29  # a seed no stage renders people from (USED_SEEDS)
USED_SEEDS = (0, 1, 7, 13)  # dataset, pretraining, augmentation targets, pixel AU readers
POSE_RANGE = np.array([8.0, 6.0, 6.0])  # extra yaw, pitch, roll (degrees), uniform +-
RELIGHT, REDRESS, NEUTRAL = 0.6, 0.5, 0.2  # shares of frames relit, re-backdropped, neutral
PAIN_SHARE = 0.6  # of the expressive frames, pain apexes (else smiles, brow raises, talking ...)
RENDER_VERSION = 1  # bump when the renders change for the same recipe


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the weights (recorded in ``PROVENANCE.json``)."""

    seed: int = SEED
    n_identities: int = 1200  # people rendered
    n_monitor: int = 100  # of them never trained on: the check printed during training
    frames: int = 8  # renders per person
    image_size: int = 128  # as the dataset's
    steps: int = 3000
    batch_size: int = 96
    learning_rate: float = 2e-3
    weight_decay: float = 5e-4
    warmup_steps: int = 200
    margin: float = 0.35  # CosFace
    scale: float = 30.0
    channels: tuple[int, ...] = (24, 48, 96, 160)
    dim: int = 128
    crop: int = FACE_CROP
    monitor_every: int = 500

    def __post_init__(self):
        if self.seed in USED_SEEDS:
            raise ValueError(f"seed {self.seed} makes people other stages use {USED_SEEDS}")
        if not 0 < self.n_monitor < self.n_identities - 1:
            raise ValueError("n_monitor must leave at least two people to train on")
        if self.frames < 2:
            raise ValueError("frames must be >= 2 (a person needs two views to be learnt)")

    @property
    def n_train(self) -> int:
        return self.n_identities - self.n_monitor

    def render_key(self) -> str:
        """What the renders depend on: a rerun with another training budget reuses them."""
        fields = (self.seed, self.n_identities, self.frames, self.image_size, RENDER_VERSION)
        return hashlib.sha256(repr(fields).encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------
# Renders


def _look(person, rng: np.random.Generator):
    """One frame's version of ``person``: their own face, perhaps under another light and in
    front of another backdrop (drawn like ``sample_identity`` draws them)."""
    from paincontrol_lib.data.synthpain.identity import HAIR_COLOURS, HAIR_STYLES

    changes = {}
    if rng.random() < RELIGHT:
        light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(0.0, 0.6), 1.0])
        changes |= {"light": light / np.linalg.norm(light), "ambient": float(rng.uniform(0.3, 0.5))}
    if rng.random() < REDRESS:
        hue = rng.uniform(0, 1, 3)
        hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.85, 1.15, 3)
        changes |= {
            "background": np.stack([0.35 + 0.5 * hue, 0.25 + 0.45 * hue[::-1]]),
            "hair": np.clip(hair, 0, 1),
            "hair_style": HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
            "clothes": rng.uniform(0.1, 0.9, 3),
        }
    return replace(person, **changes)


def _expression(rng: np.random.Generator) -> dict[str, float]:
    """Neutral, or a SynthPain apex (pain or not) at a random point of its rise, rounded to FACS
    intensities as the dataset's sequences are (AU43 only near the apex)."""
    from paincontrol_lib.data.synthpain.expressions import sample_apex

    if rng.random() < NEUTRAL:
        return {}
    _, apex = sample_apex(rng, PAIN_SHARE)
    envelope = rng.uniform(0.3, 1.0)
    return {
        au: float(peak > 0 and envelope >= 0.7)
        if au == "AU43"
        else float(np.floor(peak * envelope + 0.5))
        for au, peak in apex.items()
    }


def _render_person(job) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``frames`` renders of person ``index``: images, true 2D meshes, the AUs worn."""
    from paincontrol_lib.au_to_mesh import default_model
    from paincontrol_lib.data.synthpain.expressions import SYNTHPAIN_AUS
    from paincontrol_lib.data.synthpain.identity import sample_identity
    from paincontrol_lib.data.synthpain.render import Renderer

    index, recipe = job
    # A renderer per person: its texture caches grow with every person it draws.
    renderer = Renderer(default_model(), recipe.image_size)
    person = sample_identity(renderer.model, recipe.seed, index)
    person = replace(person, subject=f"encoder-{recipe.seed}-{index}")
    renderer.texture(person)  # painted from the person's own colours (lashes take the hair's)
    rng = stream("identity_encoder_frames", recipe.seed, index)
    images, meshes, worn = [], [], []
    for _ in range(recipe.frames):
        look = _look(person, rng)
        aus = _expression(rng)
        jitter = rng.uniform(-1, 1, 3) * POSE_RANGE
        out = renderer.render(look, aus, pose_jitter=jitter, rng=rng)
        images.append(out.image)
        meshes.append(out.landmarks_2d.astype(np.float32))
        worn.append([aus.get(au, 0.0) for au in SYNTHPAIN_AUS])
    return np.stack(images), np.stack(meshes), np.asarray(worn, np.float32)


def render_set(recipe: Recipe, work: str | Path, workers: int = 2, log=print) -> dict:
    """The renders (``images`` uint8, ``landmarks`` float32, ``person`` int, ``aus``), read from
    ``work`` when a previous run made them with the same settings, else rendered (``workers``
    forked processes; the bytes do not depend on their number) and stored there."""
    path = Path(work) / f"renders-{recipe.render_key()}.npz"
    if path.is_file():
        log(f"renders: reusing {path}")
        with np.load(path) as pack:
            data = {k: pack[k] for k in pack.files}
        data["minutes"] = float(data["minutes"])
        return data
    started = time.perf_counter()
    jobs = [(i, recipe) for i in range(recipe.n_identities)]
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # fork, as generate.py: workers inherit the loaded AU model.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
            people = list(pool.map(_render_person, jobs, chunksize=8))
    else:
        people = [_render_person(job) for job in jobs]
    data = {
        "images": np.concatenate([p[0] for p in people]),
        "landmarks": np.concatenate([p[1] for p in people]),
        "aus": np.concatenate([p[2] for p in people]),
        "person": np.repeat(np.arange(recipe.n_identities), recipe.frames),
        "minutes": (time.perf_counter() - started) / 60,
    }
    import io

    from paincontrol_lib.io import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, **data)
    atomic_write_bytes(path, buf.getvalue())
    log(f"renders: {len(data['images'])} images of {recipe.n_identities} people in "
        f"{data['minutes']:.1f} min -> {path}")  # fmt: skip
    return data


def data_hash(data: dict) -> str:
    """SHA-256 of the renders (images, meshes, people): which data the weights were fit to."""
    h = hashlib.sha256()
    for key in ("images", "landmarks", "person"):
        h.update(np.ascontiguousarray(data[key]).tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Training


def augmented_crop(image: np.ndarray, points: np.ndarray, rng: np.random.Generator,
                   crop: int = FACE_CROP) -> np.ndarray:  # fmt: skip
    """A training crop of one render: the mesh jittered like MediaPipe's (a similarity of up to
    3 degrees, 4 % scale and 2 % of the eye distance, plus 1.5 % per point), half of the images
    shrunk to 35-80 % and upscaled to 192 px (how a generated 64 px face reaches the encoder),
    then blur, JPEG, brightness and contrast, and noise, each to some of them."""
    import cv2

    pts = np.asarray(points, np.float64)
    iod = float(np.linalg.norm(pts[33] - pts[263]))
    centre = pts.mean(0)
    angle, scale = np.deg2rad(rng.uniform(-3, 3)), np.exp(rng.uniform(-0.04, 0.04))
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pts = (pts - centre) @ rot.T + centre + rng.normal(0, 0.02 * iod, 2)
    pts = pts + rng.normal(0, 0.015 * iod, pts.shape)
    if rng.random() < 0.5:
        size = image.shape[0]
        side = max(16, int(round(size * rng.uniform(0.35, 0.8))))
        small = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
        image = cv2.resize(small, (UPSCALE, UPSCALE), interpolation=cv2.INTER_CUBIC)
        pts = pts * (UPSCALE / size)
    out = face_crop(image, pts, crop).astype(np.float32)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.0))
    if rng.random() < 0.5:
        out = out * rng.uniform(0.85, 1.15) + rng.uniform(-12, 12)
    if rng.random() < 0.3:
        out = out + rng.normal(0, rng.uniform(1, 5), out.shape)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        quality = int(rng.integers(30, 91))
        _, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(out)


def monitor(network, data: dict, rows: np.ndarray, crop: int) -> dict:
    """Never-trained people: verification over all their frames (clean crops from the true
    meshes) and top-1 of every other frame against each person's first frame."""
    crops = np.stack([face_crop(data["images"][i], data["landmarks"][i], crop) for i in rows])
    z = encode(network, crops)
    people = data["person"][rows]
    first = np.r_[True, people[1:] != people[:-1]]
    gallery, labels = z[first], people[first]
    predicted = labels[np.argmax(z[~first] @ gallery.T, axis=1)]
    pairs = verification(z, people)
    summary = {k: v for k, v in pairs.items() if k not in ("genuine", "impostor")}
    return summary | {
        "top1": float(np.mean(predicted == people[~first])),
        "n_people": int(len(labels)),
        "n_frames": int(len(rows)),
    }


def train(recipe: Recipe, data: dict, log=print) -> tuple[object, dict]:
    """Fit the encoder for ``recipe.steps`` steps (one torch thread, seeded); returns the
    network (eval mode) and the training record (loss, monitor checks, minutes)."""
    import torch
    import torch.nn.functional as F

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(recipe.seed)
        rng = stream("identity_encoder_training", recipe.seed)
        train_rows = np.flatnonzero(data["person"] < recipe.n_train)
        monitor_rows = np.flatnonzero(data["person"] >= recipe.n_train)
        network = identity_network(recipe.channels, recipe.dim, recipe.crop)
        centres = torch.nn.Parameter(torch.randn(recipe.n_train, recipe.dim) * 0.01)
        optimiser = torch.optim.AdamW(
            [*network.parameters(), centres], lr=recipe.learning_rate,
            weight_decay=recipe.weight_decay,
        )  # fmt: skip

        def rate(step: int) -> float:
            if step < recipe.warmup_steps:
                return (step + 1) / recipe.warmup_steps
            done = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
            return 0.5 * (1 + np.cos(np.pi * done))

        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, rate)
        started, cpu, losses, checks = time.perf_counter(), time.process_time(), [], []
        for step in range(recipe.steps):
            network.train()
            batch = rng.choice(train_rows, recipe.batch_size, replace=False)
            crops = np.stack(
                [augmented_crop(data["images"][i], data["landmarks"][i], rng, recipe.crop)
                 for i in batch]
            )  # fmt: skip
            labels = torch.from_numpy(data["person"][batch].astype(np.int64))
            cosine = F.normalize(network(crop_tensor(crops)), dim=1) @ F.normalize(centres, dim=1).T
            logits = recipe.scale * (cosine - recipe.margin * F.one_hot(labels, recipe.n_train))
            loss = F.cross_entropy(logits, labels)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
            if (step + 1) % recipe.monitor_every == 0 or step + 1 == recipe.steps:
                check = monitor(network, data, monitor_rows, recipe.crop)
                checks.append({"step": step + 1, "loss": float(np.mean(losses[-100:])), **check})
                log(f"step {step + 1}/{recipe.steps}: loss {checks[-1]['loss']:.3f}, monitor "
                    f"AUC {check['verification_auc']:.4f} top-1 {check['top1']:.3f} "
                    f"({(time.perf_counter() - started) / 60:.1f} min)")  # fmt: skip
        network.eval()
        record = {
            "train_minutes": (time.perf_counter() - started) / 60,
            "train_cpu_minutes": (time.process_time() - cpu) / 60,
            "final_loss": float(np.mean(losses[-100:])),
            "loss_every_100": [
                float(np.mean(losses[i : i + 100])) for i in range(0, len(losses), 100)
            ],
            "monitor": checks,
        }
        return network, record
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# Publishing


def _git(*args: str) -> str | None:
    """``git args`` run at the repository root (its output), None without git."""
    from paincontrol_lib.config import REPO_ROOT

    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, cwd=REPO_ROOT
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def code_digest() -> str:
    """SHA-256 over the two files that define the encoder (its crop, network and training)."""
    from paincontrol_lib import identity

    h = hashlib.sha256()
    for path in (Path(identity.__file__), Path(__file__)):
        h.update(path.read_bytes())
    return h.hexdigest()


def publish(network, recipe: Recipe, data: dict, record: dict, out: str | Path,
            command: str) -> dict:  # fmt: skip
    """Write the weights, ``encoder.json`` and ``PROVENANCE.json`` into ``out`` (atomically)."""
    import torch
    from safetensors.torch import save_file

    from paincontrol_lib.io import atomic_folder

    status = _git("status", "--porcelain", "--", "paincontrol_lib")
    provenance = {
        "command": command,
        "code_revision": _git("rev-parse", "HEAD"),
        "code_dirty": bool(status) if status is not None else None,
        "code_digest": code_digest(),
        "seed": recipe.seed,
        "disjoint_from_seeds": list(USED_SEEDS),
        "n_identities": recipe.n_train,
        "n_rendered": recipe.n_identities,
        "n_monitor": recipe.n_monitor,
        "frames_per_identity": recipe.frames,
        "n_training_images": int(recipe.n_train * recipe.frames),
        "steps": recipe.steps,
        "recipe": asdict(recipe),
        "data_hash": data_hash(data),
        "render_minutes": float(data["minutes"]),
        "train_minutes": record["train_minutes"],
        "minutes": float(data["minutes"]) + record["train_minutes"],
        "torch": torch.__version__,
        "threads": 1,
        "varied": {
            "pose_degrees": POSE_RANGE.tolist(),
            "relit_share": RELIGHT,
            "backdrop_share": REDRESS,
            "neutral_share": NEUTRAL,
            "pain_share_of_expressive": PAIN_SHARE,
        },
    } | record
    config = {
        "channels": list(recipe.channels),
        "dim": recipe.dim,
        "crop": recipe.crop,
        "alignment": "ArcFace 5-point similarity, face oval mask (identity.face_crop)",
    }
    with atomic_folder(out) as tmp:
        state = {k: v.contiguous() for k, v in network.state_dict().items()}
        save_file(state, str(tmp / ENCODER_WEIGHTS))
        (tmp / ENCODER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        (tmp / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


def parse_args(argv=None) -> argparse.Namespace:
    defaults = Recipe()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ENCODER_DIR), help="where the weights go")
    parser.add_argument("--work", default="build/identity-encoder", help="renders kept here")
    parser.add_argument("--workers", type=int, default=2, help="rendering processes")
    for name in ("seed", "n_identities", "n_monitor", "frames", "steps", "batch_size"):
        parser.add_argument(f"--{name}", type=int, default=getattr(defaults, name))
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    recipe = Recipe(seed=args.seed, n_identities=args.n_identities, n_monitor=args.n_monitor,
                    frames=args.frames, steps=args.steps, batch_size=args.batch_size)  # fmt: skip
    data = render_set(recipe, args.work, args.workers)
    network, record = train(recipe, data)
    command = "python -m paincontrol_lib.model.identity_encoder " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    provenance = publish(network, recipe, data, record, args.out, command.strip())
    last = record["monitor"][-1]
    print(f"identity encoder -> {args.out}: {recipe.n_train} people, {recipe.steps} steps, "
          f"{provenance['minutes']:.1f} min; never-trained people: AUC "
          f"{last['verification_auc']:.4f}, top-1 {last['top1']:.3f}")  # fmt: skip
    return provenance


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
