"""The sweep: every (detector, cell, arm) fitted on the cell's data, its settings chosen on the
validation people, scored on the test people, in spawned worker processes (the worker functions
live at module level so they pickle by name)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from paincontrol_lib.augment.bank import Images, synthetic_images
from paincontrol_lib.augment.cells import Cell, check_no_leakage, real_training_rows
from paincontrol_lib.augment.detectors import detection_scores, make_detector
from paincontrol_lib.seeds import stream

_SWEEP: dict = {}  # what every cell's fits read: set once per process by _start_sweep


def _start_sweep(job: dict) -> None:
    _SWEEP.clear()
    _SWEEP.update(job)
    _SWEEP["index"] = {key: i for i, key in enumerate(job["train_keys"])}


def _fit_cell(cell: Cell) -> list[dict]:
    job, rows = _SWEEP, []
    keep = real_training_rows(job["table_train"], job["train_people"], cell.pain_people)
    real = job["real_train"].subset([job["index"][k] for k in keep["image"]])
    for arm in job["arms"]:
        extra = Images.empty() if arm == "real" else synthetic_images(job["synthetic"], arm,
                                                                       cell.pairs)  # fmt: skip
        for held_out in (job["test_people"], job["val_people"]):
            check_no_leakage(set(real.identity) | set(extra.source), held_out,
                             set(extra.identity))  # fmt: skip
        data = Images.concat([real, extra])
        for name in job["detectors"]:
            fit_seed = int(stream("detector_fit", cell.seed, cell.level).integers(2**31))
            detector = make_detector(name, job["params"]).fit(data, fit_seed, val=job["val"])
            prob, pspi = detector.predict(job["test"])
            scores = detection_scores(job["test"].pspi, prob, pspi, threshold=detector.threshold)
            rows.append({
                "detector": name, "level": cell.level, "arm": arm, "seed": cell.seed,
                **scores, "n_real": len(real), "n_real_pain": int((real.pspi > 0).sum()),
                "n_synthetic": len(extra), "n_synthetic_pain": int((extra.pspi > 0).sum()),
                "threshold": detector.threshold, **detector.chosen,
                "test_prob": np.nan_to_num(np.asarray(prob, float), nan=0.0),  # a miss scores 0
            })  # fmt: skip
    return rows


def run_sweep(real_train: Images, table_train: pd.DataFrame, val: Images, test: Images,
              synthetic: dict, cells, train_people, val_people, test_people, arms, detectors,
              params, workers: int = 1) -> pd.DataFrame:  # fmt: skip
    """Fit every (detector, cell, arm), choose its settings on the validation people (``val``)
    and score it on the test people: one row per fit, with the settings chosen and
    ``test_prob``, its pain probability for every test image (in ``test``'s order), from which
    the statistics resample test people.

    ``synthetic`` maps (method, pair) to :class:`Images` (a bank's ``images``). Cells run in
    ``workers`` spawned processes (MediaPipe-safe); every fit is seeded and single-threaded,
    so the rows do not depend on ``workers``.
    """
    job = {
        "real_train": real_train, "train_keys": list(table_train["image"]),
        "table_train": table_train[["subject", "image", "PSPI", "detected"]],
        "test": test, "val": val, "synthetic": synthetic, "train_people": list(train_people),
        "test_people": list(test_people), "val_people": list(val_people), "arms": list(arms),
        "detectors": list(detectors),
        "params": dict(params),
    }  # fmt: skip
    if workers > 1 and len(cells) > 1:
        from paincontrol_lib.parallel import process_pool

        with process_pool(min(workers, len(cells)), _start_sweep, (job,)) as pool:
            per_cell = list(pool.map(_fit_cell, cells))
    else:
        _start_sweep(job)
        per_cell = [_fit_cell(cell) for cell in cells]
    return pd.DataFrame([row for rows in per_cell for row in rows])
