"""Train the conditioned model, diffusers-example style (``parse_args(input_args=None)``, ``main``).

    python -m paincontrol_lib.model.train --landmarks_dir data/landmarks --output_dir models/x
    accelerate launch --num_processes 2 -m paincontrol_lib.model.train ...   # data parallel

Two recipes through one loop (``--recipe``):

- ``ours`` (default): v-prediction, min-SNR(5) loss weighting, EMA of the weights, loss weighted
  toward brows, eyelids and lips (where AU4 and AU43 live), cosine noise schedule;
- ``diffusers_baseline``: the plain diffusers-example recipe (epsilon prediction, SD's scaled-linear
  schedule, unweighted MSE, no EMA) on the same model and data, for the comparison.

Checkpoints ``checkpoint-N/`` are written to a temporary folder and renamed into place (never
half-written), at most ``--checkpoints_total_limit`` are kept, and ``--resume_from_checkpoint
latest`` continues after a kill with the same step count and the CPU minutes already spent.
Only identities of the training split are used: evaluation identities never appear.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

RECIPES = {
    "ours": dict(prediction_type="v_prediction", beta_schedule="squaredcos_cap_v2", snr_gamma=5.0,
                 ema_decay=0.995, region_weight=2.0),
    "diffusers_baseline": dict(prediction_type="epsilon", beta_schedule="scaled_linear",
                               snr_gamma=0.0, ema_decay=0.0, region_weight=0.0),
}  # fmt: skip


def parse_args(input_args=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train the PainControl ControlNet + identity adapter.")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--landmarks_dir", help="output of the landmark stage")
    data.add_argument("--examples", help="examples packed by model.data.save_examples (.npz)")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--recipe", choices=sorted(RECIPES), default="ours")
    p.add_argument("--preset", choices=["tiny", "sd15"], default="tiny")
    p.add_argument("--pretrained", default=None, help="sd15: Stable Diffusion 1.5 folder or hub id")
    p.add_argument("--controlnet", default=None, help="sd15: ControlNet to start from")
    p.add_argument("--init_from", default=None, help="PainControl checkpoint to fine-tune from")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--block_out_channels", type=int, nargs="+", default=[48, 96, 96])
    p.add_argument("--patch_size", type=int, default=2, help="tiny: pixels per patch side")
    p.add_argument("--train_batch_size", type=int, default=16)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--lr_warmup_steps", type=int, default=50)
    p.add_argument("--max_steps", type=int, default=100_000, help="the training budget")
    p.add_argument("--max_minutes", type=float, default=None,
                   help="safety cap on training time (stopped_by says if it fired)")  # fmt: skip
    p.add_argument("--checkpointing_steps", type=int, default=100)
    p.add_argument("--checkpoints_total_limit", type=int, default=3)
    p.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint path")
    p.add_argument("--validation_steps", type=int, default=200)
    p.add_argument("--num_validation", type=int, default=4)
    p.add_argument("--drop_text", type=float, default=0.1)
    p.add_argument("--drop_identity", type=float, default=0.1)
    p.add_argument("--drop_control", type=float, default=0.1)
    p.add_argument("--references_per_subject", type=int, default=4)
    p.add_argument("--identity_backend", default="dlib")
    p.add_argument(
        "--trainable",
        choices=["all", "identity_adapter"],
        default="all",
        help="identity_adapter: a fresh identity adapter trained on the frozen generator "
        "(sd15's `all` already keeps the UNet and text encoder frozen)",
    )
    p.add_argument(
        "--identity_cache_dir",
        default=None,
        help="where identity embeddings are cached (default: <output_dir>/identity_cache)",
    )
    p.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default="no")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: cores/processes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    for name in ("prediction_type", "beta_schedule"):
        p.add_argument(f"--{name}", default=None, help="override the recipe")
    for name in ("snr_gamma", "ema_decay", "region_weight"):
        p.add_argument(f"--{name}", type=float, default=None, help="override the recipe")
    args = p.parse_args(input_args)
    for key, value in RECIPES[args.recipe].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.resolution % 8:
        p.error(f"--resolution {args.resolution} must be a multiple of 8")
    if args.preset == "sd15" and not (args.pretrained or args.init_from):
        p.error("--preset sd15 needs --pretrained (a Stable Diffusion 1.5 folder or hub id)")
    if args.landmarks_dir and not Path(args.landmarks_dir).is_dir():
        p.error(f"--landmarks_dir {args.landmarks_dir} does not exist: run the landmark stage")
    if args.examples and not Path(args.examples).is_file():
        p.error(f"--examples {args.examples} does not exist: see paincontrol_lib.model.pretrain")
    for name in ("drop_text", "drop_identity", "drop_control"):
        if not 0 <= getattr(args, name) < 1:
            p.error(f"--{name} must lie in [0, 1)")
    return args


class Denoiser(torch.nn.Module):
    """UNet + ControlNet + text encoder as one module, so one ``accelerator.prepare`` (and
    one DDP wrapper) covers every trained weight."""

    def __init__(self, model):
        super().__init__()
        self.unet, self.controlnet, self.text_encoder = (
            model.unet,
            model.controlnet,
            model.text_encoder,
        )

    def forward(self, noisy, timesteps, input_ids, control, identity):
        text = self.text_encoder(input_ids)[0]
        down, mid = self.controlnet(
            noisy, timesteps, encoder_hidden_states=text, controlnet_cond=control, return_dict=False
        )
        return self.unet(
            noisy,
            timesteps,
            encoder_hidden_states=text,
            added_cond_kwargs={"image_embeds": [identity[:, None, :]]},
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        ).sample


def checkpoint_folders(output_dir: Path) -> list[Path]:
    """The run's ``checkpoint-N`` folders, oldest first."""
    found = [
        p for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()
    ]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


RESUME_INDEPENDENT = {"max_minutes", "max_steps", "resume_from_checkpoint", "progress",
                      "identity_cache_dir",
                      "checkpointing_steps", "checkpoints_total_limit", "validation_steps",
                      "num_validation", "threads", "output_dir"}  # fmt: skip


# The code that decides what a checkpoint contains (sampling and evaluation code do not).
TRAINING_CODE = ("train.py", "presets.py", "data.py", "text.py")


def run_signature(args) -> str:
    """What a checkpoint must share with this run to be resumed: every argument that changes
    the training itself, the landmark table it reads, the model it started from (its files,
    not only its path: a checkpoint republished in place is another start) and the training
    code."""
    import hashlib

    h = hashlib.sha256()
    settings = {k: v for k, v in sorted(vars(args).items()) if k not in RESUME_INDEPENDENT}
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    data = Path(args.examples) if args.examples else Path(args.landmarks_dir) / "landmarks.parquet"
    if data.exists():
        h.update(data.read_bytes())
    if args.init_from:
        start = Path(args.init_from)
        for path in sorted(p for p in start.rglob("*") if p.is_file()):
            h.update(str(path.relative_to(start)).encode() + path.read_bytes())
    for name in TRAINING_CODE:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint (temporary ``.tmp-`` folders never count)."""
    found = checkpoint_folders(Path(output_dir))
    return found[-1] if found else None


def start_model(args):
    """The model a run starts from: ``--init_from`` (with a fresh identity adapter where the
    run trains one or reads another encoder), else a fresh one of ``--preset``."""
    from paincontrol_lib.model.presets import (
        ModelConfig,
        PainControlModel,
        build_model,
        identity_dim,
    )

    if args.init_from:
        model = PainControlModel.from_pretrained(args.init_from)
        if model.config.resolution != args.resolution:
            raise ValueError(
                f"--init_from {args.init_from} is a {model.config.resolution} px model: "
                f"train it with --resolution {model.config.resolution}, not {args.resolution}"
            )
        if model.config.identity_backend != args.identity_backend:
            print(
                f"note: {args.init_from} reads {model.config.identity_backend} identity "
                f"embeddings; this run gives it {args.identity_backend}, so its identity "
                "adapter starts afresh"
            )
        other_encoder = model.config.identity_backend != args.identity_backend
        if other_encoder and args.max_steps == 0:
            raise ValueError(
                f"--init_from {args.init_from} reads {model.config.identity_backend} identity "
                f"embeddings, not {args.identity_backend}: with 0 training steps its identity "
                f"adapter would stay untrained (use --identity_backend "
                f"{model.config.identity_backend}, or train)"
            )
        if args.trainable == "identity_adapter" or other_encoder:
            model.fresh_identity_adapter(args.identity_backend, seed=args.seed)
        return model
    config = ModelConfig(
        preset=args.preset,
        resolution=args.resolution,
        patch_size=args.patch_size,
        block_out_channels=tuple(args.block_out_channels),
        prediction_type=args.prediction_type,
        beta_schedule=args.beta_schedule,
        pretrained=args.pretrained,
        controlnet=args.controlnet,
        identity_backend=args.identity_backend,
        identity_dim=identity_dim(args.identity_backend),
    )
    return build_model(config, seed=args.seed)


def load_training_examples(args, split: str = "train"):
    """Examples of one split from the landmark table (identity embeddings cached) or from a
    packed examples file."""
    from paincontrol_lib.model.data import load_examples

    if args.examples:
        return load_examples(args.examples, split)
    from paincontrol_lib.landmarks.table import load_landmark_table
    from paincontrol_lib.model.data import identity_embeddings, prepare_examples, reference_rows

    table = load_landmark_table(args.landmarks_dir)
    table = table[table["split"] == split]
    if table.empty:
        raise ValueError(f"no {split!r} rows in {args.landmarks_dir}")
    refs = reference_rows(table, args.references_per_subject, args.seed)
    # Never inside the landmark stage's folder: that is another stage's DVC output.
    cache = Path(args.identity_cache_dir or Path(args.output_dir) / "identity_cache")
    embeddings = identity_embeddings(refs, args.identity_backend, cache)
    return prepare_examples(table, embeddings, args.resolution)


@dataclass
class _Run:
    """What a training run holds from setup to the final save."""

    args: argparse.Namespace
    output_dir: Path
    accelerator: object
    model: object  # PainControlModel
    examples: object  # model.data.Examples of the training split
    held_out: _HeldOut  # validation people, for the grids
    input_ids: torch.Tensor  # tokenised prompt per example
    empty_ids: torch.Tensor  # the empty prompt (dropped text)
    subjects: list[str]  # subject per example
    denoiser: torch.nn.Module  # prepared by accelerate
    params: list[torch.nn.Parameter]  # the trained weights
    optimizer: object
    lr_scheduler: object
    indices: object  # the prepared loader of example indices
    ema: object | None
    text: dict  # model.text.text_conditioning of the training prompts


def main(args: argparse.Namespace) -> dict:
    """Train (resuming where asked); ``{steps, stopped_by, train_minutes, final, weights}``:
    ``stopped_by`` is ``"steps"`` when the step budget was reached, ``"minutes"`` when the time
    cap cut the run short (then said on the console, since its numbers are not the configured
    run's)."""
    run = _setup(args)
    step, spent = _resume(run)
    step, spent = _train(run, step, spent)
    if step < args.max_steps:
        run.accelerator.print(
            f"WARNING: {args.output_dir}: the {args.max_minutes}-minute cap stopped training at "
            f"step {step} of {args.max_steps}; its results are not those of the configured run "
            "(stopped_by: minutes)"
        )
    return _finish(run, step, spent)


DEVICE_SHARE_FOR_EXAMPLES = 0.25  # of the free GPU memory, leaving the rest to the model


def _fits_on_device(nbytes: int, device) -> bool:
    """Whether ``nbytes`` of prepared examples may live on the GPU for the whole run."""
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_SHARE_FOR_EXAMPLES * free


def _setup(args: argparse.Namespace) -> _Run:
    """Processes and seed, the model, the examples, the optimiser, the shuffled example order and
    the EMA, in this order (the seeded random streams run through them)."""
    from accelerate.utils import set_seed

    from paincontrol_lib.model.text import text_conditioning

    output_dir = Path(args.output_dir)
    accelerator = _accelerator(args)
    set_seed(args.seed)
    model = start_model(args)
    if model.config.preset == "sd15":
        _freeze_for_sd15(model, accelerator)
    if args.trainable == "identity_adapter":
        model.unet.requires_grad_(False)
        model.controlnet.requires_grad_(False)
        model.text_encoder.requires_grad_(False)
        for param in model.identity_parameters():
            param.requires_grad_(True)
    examples = load_training_examples(args)
    if accelerator.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        held = (examples.images.pixels, examples.controls.pixels, examples.masks)
        if _fits_on_device(sum(t.nbytes for t in held), accelerator.device):
            # no per-step host copies; a set too large (UNBC at 512 px: about 70 GB) stays on
            # the host and each batch is copied (``_batch_inputs``)
            examples.images = examples.images.to(accelerator.device)
            examples.controls = examples.controls.to(accelerator.device)
            examples.masks = examples.masks.to(accelerator.device)
    held_out = _HeldOut(args)
    input_ids = model.tokenizer(
        examples.prompts, padding="max_length", truncation=True,
        max_length=model.tokenizer.model_max_length, return_tensors="pt",
    ).input_ids  # fmt: skip
    empty_ids = model.tokenizer(
        [""], padding="max_length", max_length=model.tokenizer.model_max_length, return_tensors="pt"
    ).input_ids[0]
    subjects = list(examples.table["subject"])
    text = text_conditioning(model.tokenizer, list(examples.prompts))
    if text["words_split"] or text["prompts_truncated"]:
        print(
            f"note: this model's tokenizer splits {text['words_split']} and cuts "
            f"{text['prompts_truncated']} of {text['n_prompts']} training prompts at "
            f"{text['max_prompt_tokens']} tokens (a checkpoint saved before the tokenizer fix; "
            "retraining it with the current code gives one token per word)"
        )
    denoiser, params, optimizer, lr_scheduler, indices, ema = _optimisation(
        args, accelerator, Denoiser(model), len(examples)
    )
    return _Run(args, output_dir, accelerator, model, examples, held_out, input_ids,
                empty_ids, subjects, denoiser, params, optimizer, lr_scheduler, indices, ema,
                text)  # fmt: skip


def _accelerator(args: argparse.Namespace):
    """The process group (one process unless launched data-parallel) and its CPU threads."""
    from accelerate import Accelerator

    # cpu=True where there is no GPU: it is also what lets torchrun/accelerate launch run
    # data-parallel processes on CPU (gloo) instead of silently training one copy per process.
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision, cpu=not torch.cuda.is_available()
    )
    threads = args.threads or max(1, (os.cpu_count() or 1) // accelerator.num_processes)
    torch.set_num_threads(threads)
    return accelerator


def _freeze_for_sd15(model, accelerator) -> None:
    """SD 1.5: UNet and text encoder stay frozen; ControlNet and the identity adapter train."""
    model.unet.requires_grad_(False)
    model.text_encoder.requires_grad_(False)
    model.vae.requires_grad_(False)
    for param in model.identity_parameters():
        param.requires_grad_(True)
    if accelerator.mixed_precision != "no":
        dtype = torch.float16 if accelerator.mixed_precision == "fp16" else torch.bfloat16
        model.vae.to(accelerator.device, dtype=dtype)


def _optimisation(args: argparse.Namespace, accelerator, denoiser: Denoiser, n_examples: int):
    """``(denoiser, params, optimizer, lr_scheduler, indices, ema)``: AdamW with warm-up over the
    trainable weights, a seeded shuffle of example indices, all prepared by accelerate; the EMA
    of the weights when the recipe keeps one."""
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    params = [p for p in denoiser.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=1e-4)
    lr_scheduler = get_scheduler(
        "constant_with_warmup", optimizer, num_warmup_steps=args.lr_warmup_steps
    )
    indices = torch.utils.data.DataLoader(
        range(n_examples), batch_size=args.train_batch_size, shuffle=True, drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),
    )  # fmt: skip
    denoiser, optimizer, indices, lr_scheduler = accelerator.prepare(
        denoiser, optimizer, indices, lr_scheduler
    )
    ema = EMAModel(params, decay=args.ema_decay) if args.ema_decay > 0 else None
    return denoiser, params, optimizer, lr_scheduler, indices, ema


def _budget(args: argparse.Namespace) -> float:
    """The training time budget in seconds (``--max_minutes``; unlimited without it)."""
    return args.max_minutes * 60 if args.max_minutes else math.inf


def _resume(run: _Run) -> tuple[int, float]:
    """``(steps done, training seconds spent)``: from the checkpoint ``--resume_from_checkpoint``
    names (its training state, EMA included, loaded), else ``(0, 0.0)``."""
    args, accelerator = run.args, run.accelerator
    if not args.resume_from_checkpoint:
        return 0, 0.0
    ckpt = _checkpoint_to_resume(run)
    if ckpt is None:
        return 0, 0.0
    accelerator.load_state(str(ckpt / "state"))
    state = json.loads((ckpt / "training_state.json").read_text())
    step, spent = state["step"], state["seconds"]
    if run.ema is not None:
        run.ema.load_state_dict(torch.load(ckpt / "ema.pt", weights_only=False))
    accelerator.print(f"resumed from {ckpt} at step {step} ({spent / 60:.1f} min spent)")
    return step, spent


def _checkpoint_to_resume(run: _Run) -> Path | None:
    """The checkpoint to continue from, or None. One of another run (settings, data, code) or
    of a longer one is refused when named by path; with ``latest``, the run's old checkpoints
    and logs are removed and training starts afresh."""
    args, accelerator, output_dir = run.args, run.accelerator, run.output_dir
    ckpt = (
        latest_checkpoint(output_dir)
        if args.resume_from_checkpoint == "latest"
        else Path(args.resume_from_checkpoint)
    )
    if ckpt is None:
        return None
    saved = json.loads((ckpt / "training_state.json").read_text())
    # Past this run's budget (beyond the one step that ends a run): a longer run's.
    longer = saved["step"] > args.max_steps or saved["seconds"] > _budget(args) + 60
    if saved.get("signature") == run_signature(args) and not longer:
        return ckpt
    if args.resume_from_checkpoint != "latest":
        raise ValueError(f"{ckpt} was trained with other settings, data, code or a larger budget")
    accelerator.print(f"{ckpt} is from another run: starting afresh")
    if accelerator.is_main_process:
        for old in checkpoint_folders(output_dir):
            shutil.rmtree(old)
        shutil.rmtree(output_dir / "logs", ignore_errors=True)
    accelerator.wait_for_everyone()
    return None


def _train(run: _Run, step: int, spent: float) -> tuple[int, float]:
    """Optimisation steps from ``step`` until ``--max_steps`` or the time budget, each logged,
    checkpointed and validated at its intervals; ``(steps done, seconds spent)``.

    A resumed run is the uninterrupted run's continuation, bit for bit: the checkpoint restores
    weights, optimiser, schedule, EMA and the torch RNG; the data order replays the same
    seeded shuffle past the batches already trained on; the per-step draws (reference
    frames, condition dropping) come from a stream keyed by the step itself."""
    from tqdm.auto import tqdm

    args, accelerator = run.args, run.accelerator
    budget = _budget(args)
    log_path = _loss_log(run, step)
    show = args.progress and accelerator.is_main_process
    bar = tqdm(total=args.max_steps, initial=step, disable=not show, desc="train", mininterval=5.0)
    run.denoiser.train()
    started = time.perf_counter() - spent
    done = step >= args.max_steps or spent >= budget
    batches = _batches(run.indices, skip=step)
    while not done:
        rng = np.random.default_rng([args.seed, step, accelerator.process_index])
        loss = _train_step(run, next(batches), rng)
        step += 1
        spent = time.perf_counter() - started
        bar.update(1)
        if accelerator.is_main_process:
            with log_path.open("a") as fh:
                fh.write(f"{step},{spent:.2f},{loss.item():.6f}\n")
        done = step >= args.max_steps or spent >= budget
        _checkpoint_and_validate(run, step, spent, done)
    bar.close()
    return step, spent


def _batches(loader, skip: int):
    """The loader's batches epoch after epoch (each epoch a new draw of its seeded shuffle),
    without the first ``skip``: those a resumed run trained on before its checkpoint."""
    seen = 0
    while True:
        for batch in loader:
            seen += 1
            if seen > skip:
                yield batch


def _loss_log(run: _Run, step: int) -> Path:
    """``logs/loss.csv``: header written once; a resumed run keeps the rows up to its
    checkpoint's ``step`` (a killed run may have logged steps past it) and appends."""
    from paincontrol_lib.io import atomic_write_bytes

    log_path = run.output_dir / "logs" / "loss.csv"
    if run.accelerator.is_main_process:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if not log_path.exists():
            log_path.write_text("step,seconds,loss\n")
        else:
            header, *rows = log_path.read_text().splitlines()
            kept = [r for r in rows if r and int(r.split(",", 1)[0]) <= step]
            atomic_write_bytes(log_path, "\n".join([header, *kept, ""]).encode())
    return log_path


def _train_step(run: _Run, batch, rng: np.random.Generator) -> torch.Tensor:
    """One optimisation step on ``batch`` (example indices) and the EMA update; the loss."""
    accelerator, model = run.accelerator, run.model
    scheduler = model.scheduler
    # The model's scheduler decides what the network predicts (SD 1.5: epsilon, whatever the
    # recipe says; the tiny preset was built with the recipe's choice).
    prediction = scheduler.config.prediction_type
    x0, mask, control, ids, identity = _batch_inputs(run, batch, rng)
    n = len(batch)
    noise = torch.randn_like(x0)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (n,), device=x0.device)
    noisy = scheduler.add_noise(x0, noise, t)
    target = noise if prediction == "epsilon" else scheduler.get_velocity(x0, noise, t)
    with accelerator.accumulate(run.denoiser):
        pred = run.denoiser(noisy, t, ids.to(x0.device), control, identity)
        loss = _weighted_loss(run, pred, target, mask, t)
        accelerator.backward(loss)
        run.optimizer.step()
        run.lr_scheduler.step()
        run.optimizer.zero_grad()
    if run.ema is not None:
        run.ema.step(run.params)
    return loss


def _batch_inputs(run: _Run, batch, rng: np.random.Generator):
    """``(x0, mask, control, ids, identity)`` of the examples in ``batch``: what the UNet
    diffuses, the region mask at its size, and the three conditions, each dropped at its rate
    (a random reference embedding of the person for identity)."""
    args, accelerator, model, examples = run.args, run.accelerator, run.model, run.examples
    subjects = run.subjects
    b = batch.cpu().numpy()
    # Faces and control images are held as uint8 and read as float here, one batch at a time.
    x0 = examples.images[b].to(accelerator.device)
    mask = examples.masks[b].to(accelerator.device)
    with torch.no_grad():  # pixel patches (tiny) or SD's VAE latents (sd15)
        x0 = model.to_latent(x0)
    if not model.pixel_space:
        mask = F.interpolate(mask, size=x0.shape[-2:], mode="area")
    control = examples.controls[b].to(accelerator.device)
    ids = run.input_ids[b].clone()
    identity = torch.from_numpy(np.stack([
        examples.references[subjects[i]][rng.integers(len(examples.references[subjects[i]]))]
        for i in b
    ])).float().to(accelerator.device)  # fmt: skip
    n = len(b)
    drop = torch.from_numpy(rng.random((3, n)))
    ids[drop[0] < args.drop_text] = run.empty_ids
    identity[drop[1] < args.drop_identity] = 0
    control[drop[2] < args.drop_control] = 0
    return x0, mask, control, ids, identity


def _weighted_loss(run: _Run, pred, target, mask, t) -> torch.Tensor:
    """Mean squared error per example, weighted toward the AU regions (``--region_weight``)
    and by min-SNR (``--snr_gamma``), averaged over the batch."""
    from diffusers.training_utils import compute_snr

    args, model, scheduler = run.args, run.model, run.model.scheduler
    prediction = scheduler.config.prediction_type
    per_pixel = (pred.float() - target.float()) ** 2
    if model.pixel_space:  # back to image layout so the mask lines up
        per_pixel = F.pixel_shuffle(per_pixel, model.config.patch_size)
    if args.region_weight > 0:
        per_pixel = per_pixel * (1 + args.region_weight * mask)
    loss = per_pixel.mean(dim=(1, 2, 3))
    if args.snr_gamma > 0:
        snr = compute_snr(scheduler, t)
        weight = torch.clamp(snr, max=args.snr_gamma) / snr
        if prediction == "v_prediction":
            weight = torch.clamp(snr, max=args.snr_gamma) / (snr + 1)
        loss = loss * weight
    return loss.mean()


def _checkpoint_and_validate(run: _Run, step: int, spent: float, done: bool) -> None:
    """A checkpoint every ``--checkpointing_steps`` and at the end; a grid of validation people
    every ``--validation_steps`` (main process)."""
    args, accelerator, output_dir = run.args, run.accelerator, run.output_dir
    if step % args.checkpointing_steps == 0 or done:
        save_checkpoint(accelerator, run.model, run.ema, run.params, output_dir, step, spent, args)
    if args.validation_steps and step % args.validation_steps == 0 and accelerator.is_main_process:
        # Its own RNG: a grid drawn after a checkpoint must not shift the run's random stream,
        # or a run resumed from that checkpoint would differ from the uninterrupted one.
        with torch.random.fork_rng(devices=[]):
            validation_grid(
                run.model, run.ema, run.params, args, run.held_out(),
                output_dir / "validation" / f"step-{step:06d}.png",
            )  # fmt: skip


def _finish(run: _Run, step: int, spent: float) -> dict:
    """The weights digest of every process, and the final (EMA) model with its training record,
    saved atomically by the main process."""
    args, accelerator, output_dir = run.args, run.accelerator, run.output_dir
    accelerator.wait_for_everyone()
    # A digest of every trained weight per process: data-parallel ranks must agree.
    digest = weights_digest(run.params)
    (output_dir / "logs" / f"weights-rank{accelerator.process_index}.txt").write_text(digest + "\n")
    final = output_dir / "final"
    if accelerator.is_main_process:
        with _ema_weights(run.ema, run.params):
            record = training_record(args, step, spent, accelerator, digest)
            _atomic_save(run.model, final, record | {"text_conditioning": run.text})
    stopped_by = "steps" if step >= args.max_steps else "minutes"
    return {"steps": step, "stopped_by": stopped_by, "train_minutes": spent / 60,
            "final": str(final), "weights": digest, "text_conditioning": run.text}  # fmt: skip


def weights_digest(params) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in params:
        h.update(p.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()[:16]


class _ema_weights:
    """Context: parameters temporarily replaced by their EMA (no-op without EMA)."""

    def __init__(self, ema, params):
        self.ema, self.params = ema, params

    def __enter__(self):
        if self.ema is not None:
            self.ema.store(self.params)
            self.ema.copy_to(self.params)

    def __exit__(self, *exc):
        if self.ema is not None:
            self.ema.restore(self.params)


def training_record(args, step: int, seconds: float, accelerator, digest: str) -> dict:
    """What made a final model: arguments, steps, time, machine, library versions, data."""
    import diffusers

    from paincontrol_lib.io import file_digest

    device = accelerator.device
    return {
        "arguments": {k: v for k, v in vars(args).items() if k != "progress"},
        "steps": step,
        "stopped_by": "steps" if step >= args.max_steps else "minutes",
        "train_minutes": seconds / 60,
        "processes": accelerator.num_processes,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "weights": digest,
        "examples_sha256": file_digest(args.examples) if args.examples else None,
        "trained_on": data_domains(args),
        "signature": run_signature(args),
    }


def data_domains(args) -> list[str]:
    """What kinds of faces the weights learned from: ``synthpain`` (the renderer's faces; packed
    example files are SynthPain by construction, ``model/pretrain.py``) or ``photographs`` (any
    other dataset), with those of the ``--init_from`` checkpoint it started from."""
    from paincontrol_lib.model.presets import checkpoint_domains

    domains = {"synthpain"} if args.examples else set()
    if args.landmarks_dir:
        from paincontrol_lib.landmarks.table import load_landmark_table

        table = load_landmark_table(args.landmarks_dir)
        image = Path(table["image"].iloc[0])  # <root>/images/<person>/<frame>.png
        synthpain = any((root / "synthpain.parquet").is_file() for root in image.parents)
        domains.add("synthpain" if synthpain else "photographs")
    if args.init_from:
        domains.update(checkpoint_domains(args.init_from) or [])
    return sorted(domains)


def _atomic_save(model, folder: Path, record: dict | None = None) -> None:
    tmp = folder.parent / f".tmp-{folder.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    if record is not None:
        (tmp / "training.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def save_checkpoint(accelerator, model, ema, params, output_dir: Path, step, seconds, args) -> None:
    """``checkpoint-N/``: resumable state + the (EMA) model in diffusers format, atomically."""
    accelerator.wait_for_everyone()
    tmp = output_dir / f".tmp-checkpoint-{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / "state"))
    if accelerator.is_main_process:
        if ema is not None:
            torch.save(ema.state_dict(), tmp / "ema.pt")
        with _ema_weights(ema, params):
            model.save_pretrained(tmp / "model")
        (tmp / "training_state.json").write_text(
            json.dumps(
                {
                    "step": step,
                    "seconds": seconds,
                    "recipe": args.recipe,
                    "signature": run_signature(args),
                }
            )
            + "\n"
        )
        final = output_dir / f"checkpoint-{step}"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in checkpoint_folders(output_dir)[: -args.checkpoints_total_limit]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


class _HeldOut:
    """The validation people's examples for validation grids, prepared on first use and then
    kept. Never the test people: what is looked at while training must not be what is scored."""

    def __init__(self, args):
        self.args, self.examples, self.tried = args, None, False

    def __call__(self):
        if not self.tried:
            self.tried = True
            try:
                self.examples = load_training_examples(self.args, split="val")
            except ValueError:  # no validation split in this data: no grids
                pass
        return self.examples


def validation_grid(model, ema, params, args, held_out, path: Path) -> None:
    """Validation identities: control | identity reference | sample, one row each."""
    from PIL import Image

    from paincontrol_lib.io import atomic_write_bytes
    from paincontrol_lib.model.sampler import SamplerConfig
    from paincontrol_lib.model.sampling import sample

    if held_out is None:
        return
    k = min(args.num_validation, len(held_out))
    pick = np.linspace(0, len(held_out) - 1, k).round().astype(int)
    identity = np.stack([held_out.references[held_out.table["subject"][i]][0] for i in pick])
    with _ema_weights(ema, params):
        prompts = [held_out.prompts[i] for i in pick]
        sampler = SamplerConfig().model_alone()  # the model alone, as the stage scores it
        seeds = [args.seed + j for j in range(k)]
        images = sample(model, held_out.controls[pick], identity, prompts, sampler, seeds)
    ref_rows = [held_out.reference_keys[held_out.table["subject"][i]][0] for i in pick]
    keys = list(held_out.table["key"])
    refs = [held_out.images[keys.index(key)] for key in ref_rows]
    rows = []
    for j, i in enumerate(pick):
        ctl = (held_out.controls[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        ref = ((refs[j].permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
        rows.append(np.concatenate([ctl, ref, images[j]], axis=1))
    grid = np.concatenate(rows, axis=0)
    import io

    buf = io.BytesIO()
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(
        buf, "PNG"
    )
    atomic_write_bytes(path, buf.getvalue())


if __name__ == "__main__":
    print(json.dumps(main(parse_args())))
