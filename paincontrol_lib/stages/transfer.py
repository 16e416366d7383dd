"""Stage 03 (notebook ``03_transfer``): held-out source sequences x held-out target
identities, every method.

Sources and targets are test-split people only (never seen in training). A person can be both
(the default's 10 sources and 10 targets among 15 test people share at least 5), but nobody is
transferred onto themself. Each source pain sequence (neutral -> apex -> neutral) is retargeted
frame by frame onto each target's neutral face and generated with every method, one shared
seed per sequence; ``explicit`` PSPI levels are rendered on every target too. Everything lands
in one folder (written atomically) with a manifest of what was asked for.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from paincontrol_lib.facs import PAIN_AUS
from paincontrol_lib.io import (
    atomic_folder,
    atomic_write_bytes,
    save_figure,
    save_image,
    write_json,
)
from paincontrol_lib.landmarks.face import face_of
from paincontrol_lib.landmarks.table import load_landmark_table, mesh_of, neutral_row
from paincontrol_lib.model.presets import PainControlModel
from paincontrol_lib.model.sampler import SamplerConfig, tuned_sampler
from paincontrol_lib.retarget import aus_for_pspi, retarget
from paincontrol_lib.seeds import stream
from paincontrol_lib.transfer import (
    MANIFEST,
    METHODS,
    MODEL_METHODS,
    Transfer,
)

METRICS = "transfer.json"


@dataclass(frozen=True)
class Design:
    """Who is transferred onto whom: test people only, nobody onto themself."""

    sources: dict[str, str]  # source person -> their strongest pain sequence
    targets: list[str]  # people who receive expressions (and the explicit PSPI levels)
    pairs: list[tuple[str, str]]  # (source, target)


def plan_design(
    table: pd.DataFrame, n_sources: int, n_targets: int, targets_per_source: int, seed: int
) -> Design:
    """The ``n_sources`` test people with the strongest pain sequences, ``n_targets`` test
    people (seeded), and for each source ``targets_per_source`` targets other than itself, dealt
    so that every target receives about as many sources as every other."""
    test = table[(table["split"] == "test") & table["detected"]]
    peaks = test.groupby(["subject", "sequence"])["PSPI"].max().reset_index()
    peaks = peaks[peaks["PSPI"] > 0].sort_values(
        ["PSPI", "subject", "sequence"], ascending=[False, True, True]
    )
    strongest = peaks.drop_duplicates("subject")
    people = sorted(test["subject"].unique())
    if len(strongest) < n_sources or len(people) < n_targets or n_targets < 2:
        raise ValueError(
            f"{len(people)} test people ({len(strongest)} with a pain sequence) cannot give "
            f"{n_sources} sources and {n_targets} targets (at least 2)"
        )
    if not 1 <= targets_per_source < n_targets:
        raise ValueError(f"targets_per_source must be in [1, {n_targets - 1}]")
    sources = dict(
        zip(strongest["subject"][:n_sources], strongest["sequence"][:n_sources], strict=True)
    )
    targets = sorted(stream("transfer_targets", seed).choice(people, n_targets, replace=False))
    received = dict.fromkeys(targets, 0)
    pairs = []
    for source in sorted(sources):
        open_ = sorted((t for t in targets if t != source), key=lambda t: (received[t], t))
        for target in open_[:targets_per_source]:
            received[target] += 1
            pairs.append((source, target))
    return Design(sources, [str(t) for t in targets], _balance(pairs, received))


def _balance(pairs: list, received: dict) -> list:
    """Move pairs from the most- to the least-served target until their counts differ by at
    most one (the greedy deal can end unbalanced when a source may not receive itself)."""
    pairs = list(pairs)
    for _ in range(len(pairs) * len(received)):
        high = max(received, key=lambda t: (received[t], t))
        low = min(received, key=lambda t: (received[t], t))
        if received[high] - received[low] <= 1:
            break
        movable = [i for i, (s, t) in enumerate(pairs)
                   if t == high and s != low and (s, low) not in pairs]  # fmt: skip
        if not movable:
            break
        source = pairs[movable[0]][0]
        pairs[movable[0]] = (source, low)
        received[high], received[low] = received[high] - 1, received[low] + 1
    return sorted(pairs)


def frames_across_pspi(frames: pd.DataFrame, k: int) -> pd.DataFrame:
    """``k`` frames of a sequence spread over its PSPI levels (neutral to apex), in time order."""
    ranked = frames.sort_values(["PSPI", "frame"], kind="stable")
    picks = np.unique(np.linspace(0, len(ranked) - 1, min(k, len(ranked))).round().astype(int))
    return ranked.iloc[picks].sort_values("frame")


@dataclass
class TransferResult:
    manifest: pd.DataFrame  # one row per generated image: what was asked for, and where it is
    metrics: dict  # reports/metrics/transfer.json
    panels: dict  # arrays for the figures


@dataclass
class _Outputs:
    """What the stage collects while it generates: manifest rows, timings, panels."""

    engine: Transfer
    folder: Path
    seed: int
    records: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    panels: dict = field(default_factory=lambda: {"sequences": []})

    def generate(self, method, target: str, face, expressions, requested=None) -> np.ndarray:
        start = time.perf_counter()
        images = self.engine.generate(method, face, expressions, seed=self.seed,
                                      shared_noise=True, requested=requested)  # fmt: skip
        self.seconds[method] = self.seconds.get(method, 0.0) + time.perf_counter() - start
        return images

    def record(self, method, target_row, expr, name, image, **source) -> None:
        save_image(self.folder / name, image)
        self.records.append(
            {
                "method": method,
                "label": self.engine.label(method),  # what ran: start and steps
                "mode": expr.mode,
                **source,
                "target": str(target_row["subject"]),
                "target_image": target_row["image"],
                "pspi": expr.pspi,
                "aus": expr.aus,
                "target_aligned": expr.aligned.astype(np.float32).ravel(),
                "seed": self.seed,
                "path": name,
            }
        )


def _warp_start(sampler: dict, tuning) -> SamplerConfig:
    """The warp-start variant: tuned on val people, or (no tuning file) params' sampler from the
    warped target."""
    if tuning is None:
        return SamplerConfig.from_params(sampler | {"start": "warped_target"})
    return tuned_sampler(sampler, tuning, "warp_start")


def run(
    base: dict, transfer: dict, sampler: dict, tuning, landmarks_dir, out_dir, reports_dir
) -> TransferResult:
    """Generate every (source frame, target, method) and the explicit PSPI levels into
    ``out_dir`` (replaced atomically, with its manifest) and write ``transfer.json``. Model
    methods are drawn with the sampler stage 02 chose on validation people (``tuning``: its
    ``tuning.json``)."""
    started = time.perf_counter()
    methods = list(transfer["methods"])
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown transfer methods {sorted(unknown)}; expected {METHODS}")
    table = load_landmark_table(landmarks_dir)
    model = PainControlModel.from_pretrained(transfer["checkpoint"])
    guided = "paincontrol_au_guided" in methods
    au_guided = tuned_sampler(sampler, tuning, "au_guided") if guided else None
    engine = Transfer(model, tuned_sampler(sampler, tuning),
                      warp_start=_warp_start(sampler, tuning), au_guided=au_guided,
                      guide_dir=transfer["au_guide"])  # fmt: skip
    design = plan_design(
        table,
        transfer["n_sources"],
        transfer["n_targets"],
        transfer["targets_per_source"],
        base["seed"],
    )
    # target -> (its neutral row, its face): each face embedded once, reused by every call
    target_faces = {
        t: (row, face_of(row)) for t in design.targets for row in [neutral_row(table, t)]
    }
    with atomic_folder(out_dir) as tmp:
        out = _Outputs(engine, tmp, base["seed"])
        for subject, sequence in design.sources.items():
            receivers = {t: target_faces[t] for s, t in design.pairs if s == subject}
            _transfer_sequence(out, table, subject, sequence, receivers, methods, transfer)
        _explicit_levels(out, target_faces, methods, list(transfer["explicit_pspi"]))
        manifest = pd.DataFrame(out.records)
        manifest["aus"] = manifest["aus"].map(
            lambda a: json.dumps({k: round(float(v), 3) for k, v in a.items()})
        )
        manifest.to_parquet(tmp / MANIFEST)
    counts = manifest.groupby("method").size()
    metrics = {
        "mode": transfer["mode"],
        "n_sources": len(design.sources),
        "n_targets": len(design.targets),
        "n_pairs": len(design.pairs),
        "frames_per_pair": transfer["frames_per_pair"],
        "sampler": engine.sampler.as_dict(),
        "warp_start_sampler": engine.warp_start.as_dict(),
        "au_guided_sampler": engine.au_guided.as_dict() if guided else None,
        "labels": {m: engine.label(m) for m in methods},
        "steps_run": {m: engine.sampler_for(m).steps_run for m in methods if m in MODEL_METHODS},
        "methods": {m: {"n_outputs": int(counts.get(m, 0))} for m in methods},
        "per_image_seconds": {
            m: out.seconds.get(m, 0.0) / max(1, int(counts.get(m, 0))) for m in methods
        },
    }
    metrics["seconds"] = time.perf_counter() - started
    write_json(Path(reports_dir) / "metrics" / METRICS, metrics)
    return TransferResult(manifest, metrics, out.panels)


def _transfer_sequence(out: _Outputs, table, subject, sequence, target_faces, methods, transfer):
    """One source sequence (``frames_per_pair`` frames across its PSPI levels, in time order)
    onto each of its targets, with every method."""
    size, mode = out.engine.size, transfer["mode"]
    frames = table[(table["subject"] == subject) & (table["sequence"] == sequence)]
    frames = frames_across_pspi(frames[frames["detected"]], transfer["frames_per_pair"])
    neutral = mesh_of(neutral_row(table, subject))
    source_crops = np.stack([face_of(r).crop(size) for _, r in frames.iterrows()])
    requested = None  # AU guidance steers toward the source's AUs as the guide reads them
    if "paincontrol_au_guided" in methods:
        source_neutral = face_of(neutral_row(table, subject)).crop(size)
        requested = out.engine.guide_reader.predict(
            source_crops, np.repeat(source_neutral[None], len(source_crops), axis=0)
        )
    for target, (target_row, face) in target_faces.items():
        expressions = [
            retarget(mode, face.landmarks, source=mesh_of(r), source_neutral=neutral, size=size)
            for _, r in frames.iterrows()
        ]
        outputs = {}
        for method in methods:
            outputs[method] = images = out.generate(method, target, face, expressions, requested)
            for (_, row), expr, image in zip(frames.iterrows(), expressions, images, strict=True):
                frame = int(row["frame"])
                name = f"{method}/{subject}_{sequence}_to_{target}_f{frame:02d}.png"
                out.record(
                    method,
                    target_row,
                    expr,
                    name,
                    image,
                    source=subject,
                    source_sequence=sequence,
                    source_frame=frame,
                    source_image=row["image"],
                    frame=frame,
                    source_pspi=float(row["PSPI"]),
                )
        out.panels["sequences"].append(
            {
                "source": subject,
                "target": target,
                "source_crops": source_crops,
                "target_crop": face.crop(size),
                "outputs": outputs,
                "controls": np.stack([e.control for e in expressions]),
                "pspi": [e.pspi for e in expressions],
                "aus": [e.aus for e in expressions],
                "source_aus": [
                    {au: float(r[au]) for au in PAIN_AUS if au in r and np.isfinite(r[au])}
                    for _, r in frames.iterrows()
                ],  # fmt: skip
            }
        )


def _explicit_levels(out: _Outputs, target_faces, methods, levels):
    """PSPI levels asked for directly (no source face) on every target, with every method."""
    for target, (target_row, face) in target_faces.items():
        expressions = [
            retarget("explicit", face.landmarks, aus=aus_for_pspi(level), size=out.engine.size)
            for level in levels
        ]
        for method in methods:
            images = out.generate(method, target, face, expressions)
            for level, expr, image in zip(levels, expressions, images, strict=True):
                name = f"{method}/explicit_pspi{level:02d}_to_{target}.png"
                out.record(
                    method,
                    target_row,
                    expr,
                    name,
                    image,
                    source="explicit",
                    source_sequence=None,
                    source_frame=None,
                    source_image=None,
                    frame=None,
                    source_pspi=float(level),
                )


def _apex(panel: dict) -> int:
    return int(np.argmax(panel["pspi"]))


def _column_label(label: str, width: int = 13) -> str:
    """A method's label in short lines for a column header: the name, then its note (steps run)
    on lines of its own, so neighbouring headers never run into each other."""
    import textwrap

    head, _, note = label.partition(" (")
    note = f"({note}" if note else ""
    head, _, variant = head.partition(", ")
    parts = [head, variant, note]
    return "\n".join(line for part in parts if part for line in textwrap.wrap(part, width))


def apex_grid_figure(result: TransferResult, figures_dir):
    """Each source at its strongest frame on its first target: source | target neutral |
    control | each method (one pair per source keeps the figure a page high)."""
    from paincontrol_lib.figures import image_grid

    methods, labels = list(result.metrics["methods"]), result.metrics["labels"]
    rows, names, shown = [], [], set()
    for panel in result.panels["sequences"]:
        if panel["source"] in shown:
            continue
        shown.add(panel["source"])
        apex = _apex(panel)
        rows.append([panel["source_crops"][apex], panel["target_crop"], panel["controls"][apex],
                     *(panel["outputs"][m][apex] for m in methods)])  # fmt: skip
        names.append(f"{panel['source']} -> {panel['target']}\nPSPI {panel['pspi'][apex]:.0f}")
    columns = ["source (apex)", "target (neutral)", "control",
               *(_column_label(labels[m]) for m in methods)]  # fmt: skip
    fig = image_grid(rows, names, columns, cell_inches=0.9)
    # 150 dpi draws each 64 px output over 135 px: nothing lost, a third fewer bytes than 200
    save_figure(fig, Path(figures_dir) / "transfer_grid.png", dpi=150)
    return fig


def sequence_figure(result: TransferResult, figures_dir):
    """The first sequence frame by frame: source, controls, then each method."""
    from paincontrol_lib.figures import image_grid

    methods = list(result.metrics["methods"])
    panel = result.panels["sequences"][0]
    rows = [list(panel["source_crops"]), list(panel["controls"])]
    rows += [list(panel["outputs"][m]) for m in methods]
    labels = ["source", "control", *(result.metrics["labels"][m] for m in methods)]
    columns = [f"frame {i + 1}: PSPI {p:.0f}" for i, p in enumerate(panel["pspi"])]
    fig = image_grid(rows, labels, columns, cell_inches=0.9,
                     title=f"Source {panel['source']} onto target {panel['target']}, in time "
                     "order")  # fmt: skip
    save_figure(fig, Path(figures_dir) / "transfer_sequence.png")
    return fig


def demo(checkpoint, landmarks_dir, pspi: float = 8.0, start: str = "noise",
         identity_scale: float = 3.0, start_strength: float = 0.5, guidance_scale: float = 2.0,
         target: str | None = None, seed: int = 0):  # fmt: skip
    """One face in seconds, to try settings in the notebook without rebuilding the pipeline: the
    target's identity photo (default: the first test person) wearing the PSPI asked for
    (explicit mode), drawn by ``checkpoint`` with these sampler settings. Returns the figure
    (identity photo | control | output), titled with what ran: its start and steps run."""
    from paincontrol_lib.figures import image_grid

    table = load_landmark_table(landmarks_dir)
    photos = table[(table["split"] == "test") & table["neutral_reference"] & table["detected"]]
    target = target or sorted(photos["subject"])[0]
    face = face_of(neutral_row(table, target))
    config = SamplerConfig(
        start=start,
        start_strength=start_strength,
        identity_scale=identity_scale,
        guidance_scale=guidance_scale,
    )
    engine = Transfer(PainControlModel.from_pretrained(checkpoint), config)
    expression = retarget("explicit", face.landmarks, aus=aus_for_pspi(pspi), size=engine.size)
    image = engine.generate("paincontrol", face, [expression], seed=seed)[0]
    ran = "" if config.from_start_image else f", {config.steps_run} of {config.steps} steps run"
    title = f"{engine.label('paincontrol')}{ran}; identity scale {identity_scale:g}"
    return image_grid([[face.crop(engine.size), expression.control, image]], [target],
                      ["identity photo", f"control: PSPI {pspi:g}", "output"], cell_inches=1.4,
                      title=title)  # fmt: skip


ANIMATION = "transfer_animation.gif"
ANIMATED = ("paincontrol", "paincontrol_warp_start", "paincontrol_au_guided", "warp")
ANIMATION_SCALE = 2  # each output drawn at twice its pixels
ANIMATION_FRAME_MS = 700


def animation(result: TransferResult, data: dict, landmarks_dir, figures_dir):
    """The first sequence as a reader can watch it (``reports/figures/transfer_animation.gif``,
    one frame per source frame, looping): the source, the exact answer on the target where the
    data have exact answers (SynthPain: the target rendered with the source frame's AUs), and
    PainControl, its variants and the warp, each column labelled with what ran. Returns it as an
    image the notebook shows (it plays in the book)."""
    import io
    import textwrap

    from IPython.display import Image as Shown
    from PIL import Image, ImageDraw, ImageFont

    panel = result.panels["sequences"][0]
    columns = [("source", list(panel["source_crops"]))]
    exact = _exact_sequence(panel, data, landmarks_dir)
    if exact is not None:
        columns.append(("exact answer", exact))
    labels = result.metrics["labels"]
    columns += [(labels[m], list(panel["outputs"][m])) for m in ANIMATED if m in panel["outputs"]]
    side = panel["source_crops"].shape[1] * ANIMATION_SCALE
    font = ImageFont.load_default(size=11)
    header = 44
    frames = []
    for t, level in enumerate(panel["pspi"]):
        canvas = Image.new("RGB", (side * len(columns), side + header), "white")
        draw = ImageDraw.Draw(canvas)
        for k, (label, images) in enumerate(columns):
            tile = Image.fromarray(np.asarray(images[t], np.uint8)).resize((side, side))
            canvas.paste(tile, (k * side, header))
            lines = textwrap.wrap(label, 21)[:3] + (
                [f"frame {t + 1}: PSPI {level:.0f}"] if k == 0 else []
            )
            for j, line in enumerate(lines):
                draw.text((k * side + 3, 2 + 13 * j), line, fill="black", font=font)
        frames.append(canvas.quantize(colors=255, dither=Image.Dither.NONE))
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:],
                   duration=ANIMATION_FRAME_MS, loop=0, optimize=True)  # fmt: skip
    atomic_write_bytes(Path(figures_dir) / ANIMATION, buffer.getvalue())
    return Shown(data=buffer.getvalue(), format="gif")


def _exact_sequence(panel: dict, data: dict, landmarks_dir) -> list | None:
    """The exact answers of a sequence panel (SynthPain: the target wearing each source frame's
    AUs, cropped as the outputs are), or None where the data have none."""
    from paincontrol_lib.evaluate import ExactAnswers

    root = Path(data.get("root", "")) if data.get("source") == "synthpain" else None
    if root is None or not (root / "config.json").is_file() or not all(panel["source_aus"]):
        return None
    exact = ExactAnswers(root, load_landmark_table(landmarks_dir))
    size = panel["source_crops"].shape[1]
    return [exact(panel["target"], aus, size)[0] for aus in panel["source_aus"]]


def explicit_figure(result: TransferResult, out_dir, figures_dir):
    """The explicit PSPI levels on the first target, one row per method."""
    from PIL import Image

    from paincontrol_lib.figures import image_grid

    methods = list(result.metrics["methods"])
    explicit = result.manifest[result.manifest["mode"] == "explicit"]
    target = explicit["target"].iloc[0]
    explicit = explicit[explicit["target"] == target]
    levels = sorted(explicit["pspi"].unique())
    rows = [
        [np.asarray(Image.open(Path(out_dir) / explicit[(explicit["method"] == method)
                                & (explicit["pspi"] == level)]["path"].iloc[0]))
         for level in levels]
        for method in methods
    ]  # fmt: skip
    title = f"PSPI levels asked for directly on target {target} (no source)"
    fig = image_grid(rows, [result.metrics["labels"][m] for m in methods],
                     [f"PSPI {level:g} asked" for level in levels], cell_inches=0.9,
                     title=title)  # fmt: skip
    save_figure(fig, Path(figures_dir) / "transfer_explicit.png")
    return fig


def sampler_start_figure(result: TransferResult, figures_dir, n: int = 4):
    """The sampler's start and what it makes of it: the target warped onto the requested mesh
    (the warp baseline's output) is noised to ``start_strength`` and denoised; the last column
    shows where the model changed the start."""
    from paincontrol_lib.figures import image_grid

    sampler = result.metrics["warp_start_sampler"]
    if "paincontrol_warp_start" not in result.metrics["methods"]:
        return None
    rows, labels = [], []
    for panel in result.panels["sequences"][:n]:
        apex = _apex(panel)
        start = panel["outputs"]["warp"][apex] if "warp" in panel["outputs"] else None
        output = panel["outputs"]["paincontrol_warp_start"][apex]
        change = None
        if start is not None:
            diff = np.abs(output.astype(np.int16) - start.astype(np.int16)).mean(axis=2)
            change = np.clip(diff * 4, 0, 255).astype(np.uint8)[..., None].repeat(3, axis=2)
        rows.append([panel["controls"][apex], start, output, change])
        labels.append(f"{panel['source']} -> {panel['target']}")
    columns = ["control", "start: target warped\nonto the control",
               result.metrics["labels"]["paincontrol_warp_start"].replace(", ", "\n"),
               "change\n|output - start| x 4"]  # fmt: skip
    strength = sampler["start_strength"]
    steps = result.metrics["steps_run"]["paincontrol_warp_start"]
    title = (f"Start noised to strength {strength:g}; {steps} of a {sampler['steps']}-step "
             "schedule denoise it")  # fmt: skip
    fig = image_grid(rows, labels, columns, cell_inches=1.3, title=title)
    save_figure(fig, Path(figures_dir) / "transfer_sampler_start.png")
    return fig


def method_overview_figure(result: TransferResult, figures_dir):
    """The method on one real pair of this run, left to right: the source's expression becomes
    a mesh, is retargeted onto the target's face and drawn as the control image; the control,
    an AU prompt and identity tokens from the target's photo condition the ControlNet, which
    denoises pure noise into the output (PainControl, the paper's sampler)."""
    import textwrap

    import matplotlib.pyplot as plt

    from paincontrol_lib.model.text import prompt_from_aus

    panel = result.panels["sequences"][0]
    apex = _apex(panel)
    method = "paincontrol" if "paincontrol" in panel["outputs"] else next(iter(panel["outputs"]))
    output = panel["outputs"][method]
    noise = np.random.default_rng(0).integers(0, 256, output[apex].shape, dtype=np.uint8)
    steps = [
        ("source face\n(pain, apex frame)", panel["source_crops"][apex]),
        ("target identity photo\n-> identity tokens", panel["target_crop"]),
        ("control: source expression\nretargeted onto the\ntarget's 478-point mesh",
         panel["controls"][apex]),
        ("start: pure noise,\nevery DDIM step run", noise),
        (f"output: {result.metrics['labels'][method]}\n(control + prompt +\nidentity tokens)",
         output[apex]),
    ]  # fmt: skip
    steps = [(label, image) for label, image in steps if image is not None]
    height = 3.8
    fig, axes = plt.subplots(1, len(steps), figsize=(2.1 * len(steps), height))
    for ax, (label, image) in zip(axes, steps, strict=True):
        ax.imshow(image)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_xlabel(label, fontsize=8)
        for spine in ax.spines.values():
            spine.set_visible(False)
    for left, right in zip(axes[:-1], axes[1:], strict=True):
        left.annotate("", xy=(-0.03, 0.5), xycoords=right.transAxes, xytext=(1.03, 0.5),
                      textcoords=left.transAxes,
                      arrowprops={"arrowstyle": "-|>", "color": "0.3"})  # fmt: skip
    words = prompt_from_aus(panel["aus"][apex])
    prompt = textwrap.fill(f'text prompt, written from the source\'s AUs: "{words}"', 150)
    fig.suptitle(f"PainControl on pair {panel['source']} -> {panel['target']} of this run",
                 fontsize=9)  # fmt: skip
    fig.text(0.5, 0.01, prompt, ha="center", va="bottom", fontsize=7, style="italic")
    fig.tight_layout(rect=(0, (0.15 + 0.14 * (1 + prompt.count("\n"))) / height, 1, 0.97))
    save_figure(fig, Path(figures_dir) / "method_overview.png")
    return fig


def tuning_tradeoff_figure(tuning_json, figures_dir):
    """Stage 02's sampler grid on validation people: identity kept (similarity to the exact
    answer) against expression error (pain-AU error against it), colour = denoising steps run;
    the samplers chosen (AU guidance's included) and the exact answer itself are marked."""
    import matplotlib.pyplot as plt

    from paincontrol_lib.figures import colour

    tuning = json.loads(Path(tuning_json).read_text())
    grid = pd.DataFrame(tuning["grid"])
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    points = ax.scatter(grid["au_error"], grid["identity_similarity"], c=grid["steps_run"],
                        cmap="viridis", s=40, zorder=3)  # fmt: skip
    for row in grid.itertuples():
        (x_lo, x_hi), (y_lo, y_hi) = row.au_error_ci, row.identity_similarity_ci
        x, y = row.au_error, row.identity_similarity
        ax.errorbar(x, y, xerr=[[x - x_lo], [x_hi - x]], yerr=[[y - y_lo], [y_hi - y]],
                    color=colour(7), lw=0.6, zorder=2)  # fmt: skip
    marks = {"paincontrol": ("o", "PainControl (best from noise)"),
             "warp_start": ("s", "best on the warped target"),
             "au_guided": ("D", "PainControl's setting + the best AU guidance")}  # fmt: skip
    for name, (marker, what) in marks.items():
        if name not in tuning["grid_rows"]:
            continue
        chosen = grid.iloc[tuning["grid_rows"][name]]
        ax.scatter(chosen["au_error"], chosen["identity_similarity"], s=180, marker=marker,
                   facecolors="none", edgecolors="k", lw=1.4, zorder=4,
                   label=f"{what}: {chosen['label']}")  # fmt: skip
    best = grid.iloc[tuning["grid_rows"]["selected"]]
    ax.scatter(best["au_error"], best["identity_similarity"], s=320, marker="*",
               facecolors="none", edgecolors=colour(3), lw=1.2, zorder=5,
               label=f"best of all by the objective: {best['label']}")  # fmt: skip
    exact = tuning["exact_answer"]
    ax.scatter(exact["au_error"], exact["identity_similarity"], marker="P", s=90, color=colour(2),
               zorder=4, label="the exact answer itself (ceiling)")  # fmt: skip
    fig.colorbar(points, ax=ax, label="denoising steps run (0: the warp itself)")
    weights = tuning["objective"]
    ax.set(xlabel="pain-AU error against the exact answer (fraction of each AU's range)",
           ylabel="identity similarity to the exact answer",
           title=f"Sampler settings on {tuning['n_people']} val people (objective: "
           f"{weights['identity_weight']:g} x similarity - {weights['au_error_weight']:g} x "
           "AU error)")  # fmt: skip
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    fig.tight_layout()
    save_figure(fig, Path(figures_dir) / "transfer_tuning.png")
    return fig
