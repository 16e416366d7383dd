"""Held-out identity and landmark following of a checkpoint under several sampler settings.

Nothing is retrained: ``--scales`` multiplies the identity tokens' attention output (diffusers'
``set_ip_adapter_scale``) and ``--strengths`` is the part of the DDIM schedule run from the
person's neutral photo warped onto the control's mesh (1: pure noise); the other settings are
``params.yaml: sampler``. Rows, seeds and scoring are stage 02's; every (strength, scale) pair
prints one JSON line::

    python scripts/identity_sampling.py --checkpoint pretrained/tiny-synthpain \\
        --strengths 1 0.5 0.33 0.17 --scales 1 3
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import replace
from pathlib import Path

import yaml


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="pretrained/tiny-synthpain")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 3.0])
    parser.add_argument("--strengths", type=float, nargs="+", default=[1.0, 0.33])
    parser.add_argument("--landmarks-dir", default="data/landmarks")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)

    from paincontrol_lib.identity import make_identity
    from paincontrol_lib.landmarks.mesher import FaceMesher
    from paincontrol_lib.model.heldout import evaluate_model, pick_rows
    from paincontrol_lib.model.presets import PainControlModel
    from paincontrol_lib.model.sampler import SamplerConfig
    from paincontrol_lib.model.train import load_training_examples
    from paincontrol_lib.stages.train import train_args

    params = yaml.safe_load(Path(args.params).read_text())
    seed, evaluation = params["base"]["seed"], params["evaluate_training"]
    sampler = SamplerConfig.from_params(params["sampler"])
    train = train_args(args.landmarks_dir, "models/ours", "ours", 1, params["train"], seed)
    held_out = load_training_examples(train, split="test")
    rows = pick_rows(held_out, evaluation["n_samples"], seed)
    model = PainControlModel.from_pretrained(args.checkpoint)
    mesher, embedder = FaceMesher(), make_identity("dlib")
    for strength, scale in itertools.product(args.strengths, args.scales):
        drawn_by = replace(sampler, identity_scale=scale, start_strength=strength)
        scores, _ = evaluate_model(model, held_out, rows, drawn_by, seed=seed, mesher=mesher,
                                   identity=embedder)  # fmt: skip
        print(json.dumps({"start_strength": strength, "identity_scale": scale} | scores))
    mesher.close()


if __name__ == "__main__":
    main()
