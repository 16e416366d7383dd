"""Held-out identity and landmark following of a checkpoint at several identity-adapter scales.

The scale multiplies the identity tokens' attention output at sampling time only (diffusers'
``set_ip_adapter_scale``); nothing is retrained. Rows, seeds and scoring are stage 02's::

    python scripts/identity_scale.py --checkpoint pretrained/tiny-synthpain --scales 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="pretrained/tiny-synthpain")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    parser.add_argument("--landmarks-dir", default="data/landmarks")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)

    from paincontrol_lib.identity import make_identity
    from paincontrol_lib.landmarks import FaceMesher
    from paincontrol_lib.model.heldout import pick_rows, score_images
    from paincontrol_lib.model.presets import PainControlModel
    from paincontrol_lib.model.sampling import sample
    from paincontrol_lib.model.stage import train_args
    from paincontrol_lib.model.train import load_training_examples

    params = yaml.safe_load(Path(args.params).read_text())
    seed, evaluation = params["base"]["seed"], params["evaluate_training"]
    train = train_args(args.landmarks_dir, "models/ours", "ours", 1, params["train"], seed)
    held_out = load_training_examples(train, split="test")
    rows = pick_rows(held_out, evaluation["n_samples"], seed)
    subjects = held_out.table["subject"].iloc[rows]
    identity = np.stack([held_out.references[s][0] for s in subjects])
    prompts = [held_out.prompts[i] for i in rows]
    model = PainControlModel.from_pretrained(args.checkpoint)
    mesher, embedder = FaceMesher(), make_identity("dlib")
    for scale in args.scales:  # heldout.evaluate_model's sampling, plus the adapter scale
        images = sample(
            model, held_out.controls[rows], identity, prompts, seed=seed,
            steps=evaluation["sampling_steps"], identity_scale=scale,
        )  # fmt: skip
        scores = score_images(images, held_out, rows, mesher=mesher, identity=embedder)
        print(json.dumps({"identity_scale": scale} | scores), flush=True)
    mesher.close()


if __name__ == "__main__":
    main()
