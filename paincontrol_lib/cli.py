"""``paincontrol`` command line: the same library functions the notebooks call."""

from __future__ import annotations

import argparse
import sys


def _synthesize(args) -> int:
    from paincontrol_lib.config import load_params
    from paincontrol_lib.data.synthpain.generate import SynthPainConfig, generate

    params = load_params(args.params, profile=args.profile)
    settings = dict(params["synthesize"])
    if args.identities is not None:
        settings["n_identities"] = args.identities
    config = SynthPainConfig(
        seed=args.seed if args.seed is not None else params["base"]["seed"], **settings
    )
    table = generate(config, args.out, workers=args.workers)
    print(
        f"wrote {len(table)} images of {table.subject.nunique()} people to {args.out} "
        f"in {table.attrs['generation_seconds']:.0f} s"
    )
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"paincontrol {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
