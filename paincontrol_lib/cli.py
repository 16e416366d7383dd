"""``paincontrol`` command line: the same library functions the notebooks call."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path


def _synthesize(args) -> int:
    from paincontrol_lib.config import load_params
    from paincontrol_lib.data.synthpain.generate import SynthPainConfig, generate

    params = load_params(args.params, profile=args.profile)
    settings = dict(params["synthesize"])
    if args.identities is not None:
        settings["n_identities"] = args.identities
    seed = args.seed if args.seed is not None else params["base"]["seed"]
    config = SynthPainConfig.from_params(settings, seed)
    table = generate(config, args.out, workers=args.workers)
    print(
        f"wrote {len(table)} images of {table.subject.nunique()} people to {args.out} "
        f"in {table.attrs['generation_seconds']:.0f} s"
    )
    return 0


def _as_real(args) -> int:
    from paincontrol_lib.data.synthpain.export import write_folder_layout, write_unbc_layout

    write = write_unbc_layout if args.layout == "unbc" else write_folder_layout
    out = write(args.synthpain, args.out)
    print(f"wrote {args.synthpain} in the {args.layout} layout to {out}")
    return 0


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def _images_in(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise FileNotFoundError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return found
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image or folder")
    return [path]


def default_checkpoint() -> Path:
    """The stage-02 model when the pipeline has run here, else the shipped checkpoint."""
    from paincontrol_lib.config import REPO_ROOT

    for candidate in (Path("models/ours/final"), REPO_ROOT / "models" / "ours" / "final",
                      REPO_ROOT / "pretrained" / "tiny-synthpain"):  # fmt: skip
        if (candidate / "paincontrol_model.json").is_file():
            return candidate
    raise FileNotFoundError("no PainControl checkpoint found: pass --checkpoint DIR")


TUNING = Path("reports") / "metrics" / "tuning.json"  # stage 02's sampler, chosen on val people


def tuned_sampler() -> tuple:
    """The samplers ``paincontrol transfer`` uses by default and where they come from: the ones
    the last default run chose on validation people (``reports/metrics/tuning.json``:
    ``paincontrol`` from noise, ``warp_start`` for the variant, ``au_guided``'s AU guidance; here
    or in the repository), else ``params.yaml: sampler``'s defaults (the same from the warped
    target, no AU guidance). ``(sampler, warp_start, au_guidance settings, origin)``."""
    from paincontrol_lib.config import REPO_ROOT
    from paincontrol_lib.model.sampler import SamplerConfig
    from paincontrol_lib.transfer import AU_GUIDANCE

    for candidate in (TUNING, REPO_ROOT / TUNING):
        if candidate.is_file():
            tuning = json.loads(candidate.read_text())
            if not {"paincontrol", "warp_start"} <= set(tuning):
                raise ValueError(f"{candidate}: written by an older stage 02 (no paincontrol / "
                                 "warp_start samplers); rerun it: dvc repro train")  # fmt: skip
            guided = SamplerConfig.from_params(tuning.get("au_guided", tuning["paincontrol"]))
            return (
                SamplerConfig.from_params(tuning["paincontrol"]),
                SamplerConfig.from_params(tuning["warp_start"]),
                {name: getattr(guided, name) for name in AU_GUIDANCE},
                f"tuned on val people: {candidate}",
            )
    default = SamplerConfig()
    return (default, replace(default, start="warped_target"),
            {name: getattr(default, name) for name in AU_GUIDANCE},
            "params.yaml: sampler (no tuning.json: run `make repro` to tune)")  # fmt: skip


def describe_sampler(sampler) -> str:
    """The settings that decide what runs, and how many denoising steps actually run."""
    start = f"{sampler.start} at strength {sampler.start_strength:g}"
    if sampler.start == "noise":
        start = "pure noise"
    guided = ""
    if sampler.au_guided_steps:
        guided = (f"; AU guidance {sampler.au_guidance:g} on the last {sampler.au_guided_steps} "
                  "steps")  # fmt: skip
    return (
        f"{sampler.steps_run} of {sampler.steps} DDIM steps run from {start}; guidance "
        f"{sampler.guidance_scale:g}, identity scale {sampler.identity_scale:g}, control "
        f"scale {sampler.control_scale:g}{guided}"
    )


def check_output_folder(out: Path) -> None:
    """``--out`` is replaced whole on success, so it must be a new folder or an earlier
    ``paincontrol transfer`` output (one holding its ``manifest.json``), never a file or a
    folder of other things."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: is a file; give a folder (it is created)")
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise ValueError(
            f"--out {out}: exists and is not a paincontrol transfer output (no manifest.json); "
            "give a new folder (an earlier output is replaced whole)"
        )


def _transfer(args) -> int:
    from paincontrol_lib.io import atomic_folder, atomic_write_bytes, save_image
    from paincontrol_lib.landmarks.face import read_face
    from paincontrol_lib.landmarks.mesher import FaceMesher
    from paincontrol_lib.model.sampler import SamplerConfig
    from paincontrol_lib.retarget import aus_for_pspi, retarget
    from paincontrol_lib.transfer import AU_GUIDANCE, MODEL_METHODS, Transfer

    if args.mode == "explicit" and (args.aus is None) == (args.pspi is None):
        raise ValueError("explicit mode needs exactly one of --aus (e.g. AU4=3,AU43=1) or --pspi")
    if args.mode != "explicit" and args.source is None:
        raise ValueError(f"{args.mode} mode needs --source (an image or a sequence folder)")
    if args.size < 16:
        raise ValueError(f"--size {args.size}: expected at least 16 px")
    out = Path(args.out)
    check_output_folder(out)
    # Every setting is checked before anything is loaded or written.
    sampler, warp_start, guidance, origin = tuned_sampler()
    given = {name: getattr(args, name) for name in SamplerConfig.__dataclass_fields__}
    given = {name: value for name, value in given.items() if value is not None}
    guidance |= {name: given.pop(name) for name in AU_GUIDANCE if name in given}
    if given:
        sampler, origin = (
            replace(sampler, **given),
            f"{origin}, with {sorted(given)} from the command line",
        )
    print(f"sampler: {describe_sampler(sampler)} ({origin})", file=sys.stderr)
    if "paincontrol_warp_start" in args.method:
        print(f"paincontrol_warp_start: {describe_sampler(warp_start)} ({origin})",
              file=sys.stderr)  # fmt: skip
    au_guided = replace(sampler, **guidance)  # PainControl's sampler, AU guidance added
    if "paincontrol_au_guided" in args.method:
        if not au_guided.au_guided_steps:
            raise ValueError("paincontrol_au_guided needs AU guidance: --au-guidance > 0, or a "
                             "tuning.json from `make repro`")  # fmt: skip
        print(f"paincontrol_au_guided: {describe_sampler(au_guided)} ({origin})",
              file=sys.stderr)  # fmt: skip
    model = None
    if set(args.method) & set(MODEL_METHODS):
        from paincontrol_lib.model.presets import (
            SYNTHPAIN_ONLY_NOTE,
            PainControlModel,
            checkpoint_domains,
        )

        checkpoint = args.checkpoint or default_checkpoint()
        model = PainControlModel.from_pretrained(checkpoint)
        if checkpoint_domains(checkpoint) == ["synthpain"]:
            print(SYNTHPAIN_ONLY_NOTE.format(checkpoint=checkpoint), file=sys.stderr)
    size = model.config.resolution if model else args.size
    mesher = FaceMesher()
    try:
        target = read_face(args.target, mesher, name=f"target {args.target}")
        if args.mode == "explicit":
            aus = args.aus if args.aus is not None else aus_for_pspi(args.pspi)
            names = ["explicit"]
            expressions = [retarget("explicit", target.landmarks, aus=aus, size=size)]
        else:
            frames = _images_in(Path(args.source))
            if args.source_neutral:
                neutral_path = Path(args.source_neutral)
            elif len(frames) > 1:
                neutral_path = frames[0]  # a sequence starts neutral (neutral -> apex -> neutral)
            else:
                raise ValueError(
                    f"{args.mode} mode needs the source's neutral face: pass --source-neutral IMG "
                    "or a sequence folder whose first frame is neutral"
                )
            neutral = read_face(neutral_path, mesher, name=f"source neutral {neutral_path}")
            expressions, names = [], []
            for path in frames:
                face = read_face(path, mesher, name=f"source {path}")
                expressions.append(
                    retarget(
                        args.mode,
                        target.landmarks,
                        source=face.landmarks,
                        source_neutral=neutral.landmarks,
                        size=size,
                    )  # fmt: skip
                )
                names.append(path.stem)
    finally:
        mesher.close()
    engine = Transfer(model, sampler, size=size, warp_start=warp_start,
                      au_guided=au_guided if au_guided.au_guided_steps else None)  # fmt: skip
    manifest = []
    # Written into a temporary folder that replaces --out only when every image is done: a
    # failed run leaves the previous --out as it was, and --out holds exactly its manifest.
    with atomic_folder(out) as tmp:
        for method in args.method:
            images = engine.generate(method, target, expressions, seed=args.seed,
                                     shared_noise=True)  # fmt: skip
            for name, expr, image in zip(names, expressions, images, strict=True):
                path = save_image(tmp / method / f"{name}.png", image)
                manifest.append({"method": method, "label": engine.label(method),
                                 "mode": expr.mode, "frame": name,
                                 "pspi": round(expr.pspi, 3), "seed": args.seed,
                                 "aus": {k: round(v, 3) for k, v in expr.aus.items() if v},
                                 "path": str(path.relative_to(tmp))})  # fmt: skip
        for name, expr in zip(names, expressions, strict=True):
            save_image(tmp / "control" / f"{name}.png", expr.control)
        atomic_write_bytes(tmp / "manifest.json", json.dumps(manifest, indent=1).encode())
    print(f"wrote {len(manifest)} images ({', '.join(args.method)}) to {out}")
    return 0


def _check(args) -> int:
    from paincontrol_lib.check import (
        check_arcface,
        check_controlnet,
        check_data,
        check_pyfeat,
        check_sd15,
        checks_for,
    )
    from paincontrol_lib.config import load_params

    if args.source and not args.data:
        raise ValueError("--source names the adapter for --data DIR: give --data too")
    explicit = [
        *([check_sd15(args.sd15)] if args.sd15 else []),
        *([check_controlnet(args.controlnet)] if args.controlnet else []),
        *([check_arcface(args.arcface)] if args.arcface else []),
        *([check_pyfeat()] if args.pyfeat else []),
    ]
    if args.data:
        params = load_params(args.params, profile=args.profile)
        source = args.source or params["data"]["source"]
        explicit += check_data(source, args.data, params["data"], params["base"]["seed"])
    checks = explicit or checks_for(load_params(args.params, profile=args.profile))
    if not checks:
        print("nothing to check: this configuration needs no external weights")
        return 0
    for check in checks:
        print("\n".join(check.lines()))
    missing = sum(not c.ok for c in checks)
    warned = sum(c.ok and bool(c.warnings) for c in checks)
    with_warnings = f" ({warned} with warnings)" if warned else ""
    print(f"{len(checks) - missing} of {len(checks)} ok{with_warnings}")
    return 1 if missing else 0


def _study_store(args, create: bool = False):
    """The trial set's design and its ratings database (``--db``, default beside the set)."""
    from paincontrol_lib.study.design import load_design, ratings_db_path
    from paincontrol_lib.study.store import Store

    info, trials = load_design(args.trials)
    db = Path(args.db) if args.db else ratings_db_path(args.trials)
    return info, trials, Store(db, info["design_id"] if create else None)


def _print_links(store, trials, labels: list[str] | int, url: str) -> None:
    """Invite ``labels`` (or that many raters, numbered on from those invited before)."""
    if isinstance(labels, int):
        first = len(store.progress()) + 1
        labels = [f"rater-{i}" for i in range(first, first + labels)]
    for label, token in store.invite(trials, labels):
        print(f"{label}\t{url.rstrip('/')}/r/{token}")
    print("(links are shown once: the database keeps only hashes of the tokens)")


def _study_build(args) -> int:
    from paincontrol_lib.config import load_params
    from paincontrol_lib.study.design import build_trial_set, ratings_db_path, stage_candidates

    study = load_params(args.params, profile=args.profile)["study"]
    candidates = stage_candidates(args.transfer, args.landmarks)
    info = build_trial_set(
        candidates,
        args.out,
        items_per_method=study["items_per_method"],
        repeats=study["repeats"],
        attention_checks=study["attention_checks"],
        n_raters=args.raters or study["n_raters"],
        seed=args.seed,
    )
    print(
        f"trial set {args.out}: {info['n_items']} items, {info['n_slots']} rater slots of "
        f"{info['trials_per_rater']} trials; ratings will go to {ratings_db_path(args.out)}; "
        f"keep {args.out}/key.parquet away from raters"
    )
    return 0


def _study_invite(args) -> int:
    _, trials, store = _study_store(args, create=True)
    _print_links(store, trials, args.label or args.n, args.url)
    return 0


def _study_serve(args) -> int:
    from paincontrol_lib.study.app import create_app, make_server

    _, trials, store = _study_store(args, create=True)
    server = make_server(create_app(args.trials, store), args.host, args.port, args.threads)
    url = f"http://{args.host}:{server.effective_port}"
    if args.invite:
        _print_links(store, trials, args.invite, url)
    print(f"serving {args.trials} on {url} (ratings in {store.path}); Ctrl-C stops", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


def _study_progress(args) -> int:
    _, _, store = _study_store(args)
    table = store.progress()
    print(table.to_string(index=False) if len(table) else "no raters invited yet")
    print(f"{int(table['finished'].sum())} of {len(table)} raters finished")
    return 0


def _study_export(args) -> int:
    from paincontrol_lib.io import atomic_write_bytes
    from paincontrol_lib.study.store import export_table

    _, _, store = _study_store(args)
    table = export_table(store, args.trials)
    atomic_write_bytes(args.out, table.to_csv(index=False).encode())
    print(f"wrote {len(table)} ratings of {table['rater'].nunique()} raters to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paincontrol",
        description="PainControl: identity-preserving pain expression transfer.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    syn = commands.add_parser("synthesize", help="render the SynthPain dataset")
    syn.add_argument("--out", default="data/synthpain", help="output folder (replaced atomically)")
    syn.add_argument(
        "--params", default=None, help="params.yaml to read (default: the repository's)"
    )
    syn.add_argument("--profile", default=None, help="profile merged over params (e.g. tiny)")
    syn.add_argument("--identities", type=int, default=None, help="override n_identities")
    syn.add_argument("--seed", type=int, default=None, help="override base.seed")
    syn.add_argument("--workers", type=int, default=2, help="worker processes")
    syn.set_defaults(func=_synthesize)

    real = commands.add_parser(
        "as-real",
        help="write SynthPain in a real dataset's layout (walk the real-data path without it)",
        description="SynthPain's images and labels in UNBC-McMaster's folder tree (FACS, PSPI, "
        "AAM files) or as a folder with labels.csv: set data.source and data.root to it.",
    )
    real.add_argument("--layout", choices=["unbc", "folder"], required=True)
    real.add_argument("--out", required=True, help="output folder (replaced atomically)")
    real.add_argument("--synthpain", default="data/synthpain", help="a SynthPain folder")
    real.set_defaults(func=_as_real)

    from paincontrol_lib.retarget import MODES
    from paincontrol_lib.transfer import METHODS

    tr = commands.add_parser(
        "transfer",
        help="put a source's pain expression (or requested AUs / PSPI) on a target face",
        description="Outputs <out>/<method>/<frame>.png, the control images and manifest.json.",
    )
    tr.add_argument("--source", help="source image, or a folder of frames (first = neutral)")
    tr.add_argument("--source-neutral", help="the source's neutral image (single-image source)")
    tr.add_argument("--target", required=True, help="target identity: an image of a neutral face")
    tr.add_argument(
        "--out", required=True, help="output folder (new, or an earlier output: replaced whole)"
    )
    tr.add_argument("--mode", choices=MODES, default="delta")
    tr.add_argument("--aus", help="explicit mode: AU intensities, e.g. AU4=3,AU43=1")
    tr.add_argument("--pspi", type=float, help="explicit mode: a PSPI level 0-16 instead")
    tr.add_argument("--method", nargs="+", choices=METHODS, default=["paincontrol"])
    tr.add_argument("--checkpoint", help="PainControl model folder (default: models/ours/final "
                    "after `make repro`, else pretrained/tiny-synthpain)")  # fmt: skip
    tr.add_argument("--seed", type=int, default=0)
    _add_sampler_options(tr)
    tr.add_argument("--size", type=int, default=128, help="warp-only runs: output size (px)")
    tr.set_defaults(func=_transfer)
    from paincontrol_lib.data.sources import ADAPTERS

    check = commands.add_parser(
        "check",
        help="are the external weights a configuration needs here, and will the pipeline accept "
        "a dataset folder? (nothing is downloaded)",
        description="Without folder options: what params.yaml (with --profile) needs, e.g. "
        "`paincontrol check --profile sd15`. With --data DIR: the dataset as stage 01 would "
        "load and split it (people, frames, labels, unreadable files). Exit status 1 when "
        "anything is missing or the pipeline would reject the data.",
    )
    check.add_argument("--params", default=None, help="params.yaml (default: the repository's)")
    check.add_argument("--profile", default=None, help="profile merged over params (e.g. sd15)")
    check.add_argument("--sd15", help="a Stable Diffusion 1.5 folder (diffusers layout)")
    check.add_argument("--controlnet", help="a ControlNet folder")
    check.add_argument("--arcface", help="the folder holding w600k_r50.onnx")
    check.add_argument("--pyfeat", action="store_true", help="py-feat's AU models")
    check.add_argument("--data", metavar="DIR", help="a dataset folder (e.g. data/real)")
    check.add_argument("--source", choices=sorted(ADAPTERS),
                       help="the adapter for --data (default: params data.source)")  # fmt: skip
    check.set_defaults(func=_check)
    _add_study(commands)
    return parser


def _add_sampler_options(parser) -> None:
    """The sampler's settings; each one not given comes from :func:`tuned_sampler`."""
    from paincontrol_lib.model.sampler import STARTS

    group = parser.add_argument_group(
        "sampler (default: the one the last default run tuned on val people, "
        "reports/metrics/tuning.json; each option given replaces its setting)"
    )
    options = [
        ("--steps", int, "DDIM steps"),
        ("--guidance-scale", float, "classifier-free guidance (1: none)"),
        ("--identity-scale", float, "scale of the identity tokens' attention"),
        ("--control-scale", float, "scale of the ControlNet residuals"),
        ("--start", str, "what sampling starts from: pure noise, the target's photo warped onto "
                         "the requested mesh, or the unwarped photo"),
        ("--start-strength", float, "part of the DDIM schedule run from the noised start"),
        ("--au-guidance", float, "paincontrol_au_guided only: step on each step's predicted "
                                 "clean image toward the requested pain AUs"),
        ("--au-guidance-last", float, "paincontrol_au_guided only: part of the steps it steers, "
                                      "counted back from the last"),
        ("--au-guidance-iterations", int, "paincontrol_au_guided only: gradient steps on the "
                                          "clean image per guided step"),
    ]  # fmt: skip
    for flag, kind, text in options:
        name = flag.removeprefix("--").replace("-", "_")
        group.add_argument(flag, type=kind, default=None,
                           choices=STARTS if name == "start" else None, help=text)  # fmt: skip


def _add_study(commands) -> None:
    study = commands.add_parser(
        "study",
        help="the blinded realism rating study: build, serve, invite, progress, export",
        description="A real study: build a trial set, serve it (or invite, then serve), send "
        "the links, watch progress, export the CSV, set params study.ratings to it and rerun "
        "the study stage.",
    )
    sub = study.add_subparsers(dest="study_command", required=True, metavar="STEP")

    def with_trials(parser, db: bool = True):
        parser.add_argument("--trials", default="data/study", help="trial set folder")
        if db:
            parser.add_argument("--db", help="ratings database (default: <trials>.sqlite)")
        return parser

    build = sub.add_parser("build", help="make a blinded, randomised trial set")
    build.add_argument("--out", required=True, help="trial set folder (replaced atomically)")
    build.add_argument("--transfer", default="data/transfer", help="stage-03 output folder")
    build.add_argument("--landmarks", default="data/landmarks", help="stage-01 output folder")
    build.add_argument("--params", default=None, help="params.yaml (section study)")
    build.add_argument("--profile", default=None, help="profile merged over params")
    build.add_argument("--raters", type=int, help="rater slots (default: study.n_raters)")
    build.add_argument("--seed", type=int, help="reproducible ids and orders (default: secret)")
    build.set_defaults(func=_study_build)

    invite = with_trials(sub.add_parser("invite", help="create raters; print their links once"))
    who = invite.add_mutually_exclusive_group(required=True)
    who.add_argument("--n", type=int, help="number of raters (labelled rater-1, ...)")
    who.add_argument("--label", nargs="+", help="one label per rater (e.g. a pseudonym)")
    invite.add_argument("--url", default="http://127.0.0.1:8765", help="where raters reach serve")
    invite.set_defaults(func=_study_invite)

    serve = with_trials(sub.add_parser("serve", help="run the rating web app"))
    serve.add_argument("--host", default="127.0.0.1", help="interface (default: localhost only)")
    serve.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    serve.add_argument("--threads", type=int, default=8, help="concurrent requests")
    serve.add_argument("--invite", type=int, default=0, help="create N raters, print links")
    serve.set_defaults(func=_study_serve)

    progress = with_trials(sub.add_parser("progress", help="per-rater progress (admin view)"))
    progress.set_defaults(func=_study_progress)

    export = with_trials(sub.add_parser("export", help="write every rating with its key as CSV"))
    export.add_argument("--out", required=True, help="CSV file")
    export.set_defaults(func=_study_export)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = " ".join(filter(None, [args.command, getattr(args, "study_command", None)]))
    try:
        return args.func(args)
    except (OSError, ValueError, KeyError) as exc:  # OSError: unreadable, missing, no access
        print(f"paincontrol {command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: outputs are written whole or not at all (io.py)
        print(f"interrupted: paincontrol {command}; nothing half-written was kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
