"""Small stand-ins for stage outputs, for the study tests: no model, no MediaPipe.

Every generated image names its method in its file name, its folder and a PNG text chunk, and
some have another pixel size, so the tests can check that none of that reaches a rater.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image, PngImagePlugin

METHODS = ("paincontrol", "warp")
IDENTITIES = ("alphaface", "betaface")


def fake_stage(root, slots_per_identity: int = 1):
    """``(transfer_dir, landmarks_dir)`` with a manifest, a landmark table and their images."""
    rng = np.random.default_rng(0)
    transfer, landmarks = root / "transfer", root / "landmarks"
    records, rows = [], []
    for identity in IDENTITIES:
        for k in range(slots_per_identity):
            for method in METHODS:
                path = f"{method}/src_to_{identity}_f{k:02d}.png"
                size = 80 if method == "warp" else 64  # re-encoding must make them equal
                info = PngImagePlugin.PngInfo()
                info.add_text("method", method)
                (transfer / method).mkdir(parents=True, exist_ok=True)
                pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(transfer / path, pnginfo=info)
                records.append({"method": method, "target": identity, "source": "src",
                                "source_pspi": float(k), "path": path})  # fmt: skip
            image = landmarks / "frames" / f"{identity}_{k}.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(image)
            rows.append({"subject": identity, "split": "test", "detected": True,
                         "image": str(image), "PSPI": float(k), "align_scale": 1 / 96,
                         "align_angle": 0.0, "align_tx": 0.0, "align_ty": 0.0})  # fmt: skip
    pd.DataFrame(records).to_parquet(transfer / "manifest.parquet")
    pd.DataFrame(rows).to_parquet(landmarks / "landmarks.parquet")
    return transfer, landmarks
