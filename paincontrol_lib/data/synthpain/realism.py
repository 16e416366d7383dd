"""Does SynthPain look enough like faces? MediaPipe on the renders vs the ground truth.

NME alone is weak (a face without any expression, placed right, scores nearly as well), so the
report also checks that MediaPipe's landmarks *track the expression*: correlation of eye
opening, mouth opening and inner-brow height measured on MediaPipe's mesh with the same
measures on the ground-truth mesh.

Two no-expression baselines, each similarity-aligned onto every frame's ground truth (the best
placement such a "detector" could have):
- ``template``: the generic neutral face of the AU->mesh model (knows where, not who or what);
- ``subject_template``: the person's own neutral frame (knows who and where, not the expression).
A constant shape cannot track anything, so tracking is reported for the subject template only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from paincontrol_lib import facemesh
from paincontrol_lib.data.synthpain.generate import landmarks


def _fit_onto(reference: np.ndarray, target: np.ndarray) -> np.ndarray:
    scale, rot, t = facemesh.similarity_fit(reference, target)
    return scale * reference[:, :2] @ rot.T + t


def generic_template(table: pd.DataFrame) -> np.ndarray:
    """The model's neutral face (y flipped to image orientation) fitted onto each row."""
    from paincontrol_lib.au_to_mesh import default_model

    neutral = default_model().neutral[:, :2] * np.array([1.0, -1.0])
    return np.stack([_fit_onto(neutral, gt) for gt in landmarks(table)])


def subject_template(table: pd.DataFrame) -> np.ndarray:
    """Each row's own person's neutral frame, fitted onto the row's ground truth."""
    gt = landmarks(table)
    neutral = table["neutral_reference"].to_numpy()
    by_subject = dict(zip(table["subject"][neutral], gt[neutral], strict=True))
    return np.stack(
        [_fit_onto(by_subject[s], g) for s, g in zip(table["subject"], gt, strict=True)]
    )


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def tracking(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Pearson r between expression measures on predicted and true landmarks."""
    fp, ft = facemesh.expression_features(pred), facemesh.expression_features(truth)
    return {name: _corr(fp[name], ft[name]) for name in ft}


def realism_report(table: pd.DataFrame, detected: np.ndarray, predicted: np.ndarray) -> dict:
    """Metrics of the realism bar. ``predicted``: (n, 478, >=2), rows without a face ignored."""
    detected = np.asarray(detected, bool)
    gt = landmarks(table)
    own = subject_template(table)
    report = {
        "n_images": int(len(table)),
        "n_identities": int(table["subject"].nunique()),
        "mediapipe_detection_rate": float(detected.mean()),
        "mediapipe_nme": float(facemesh.nme(predicted[detected], gt[detected]).mean()),
        "mediapipe_nme_median": float(np.median(facemesh.nme(predicted[detected], gt[detected]))),
        "template_nme": float(facemesh.nme(generic_template(table), gt).mean()),
        "subject_template_nme": float(facemesh.nme(own, gt).mean()),
        "tracking_corr": tracking(predicted[detected], gt[detected]),
        "subject_template_tracking_corr": tracking(own, gt),
    }
    return report
