"""One base seed (``params.yaml: base.seed``), one random stream per purpose, named.

Every random choice the pipeline makes draws from ``stream(purpose, *keys)``: a generator seeded
by the keys (the base seed first, then e.g. a person's index) and the purpose's own key, so that
two purposes never share a stream and adding a draw in one place never shifts another's. The
purpose keys are fixed numbers, not derived from the names at run time, because they are the
keys these streams have always had: the published numbers stay reproducible.
"""

from __future__ import annotations

import numpy as np

PURPOSES = {
    "subject_split": 0x5B17,  # which real-data people are held out
    "synthpain_test_people": 0x7E57,  # which SynthPain people are held out
    "synthpain_identity": 0x5EED,  # a SynthPain person's face, colours and features
    "synthpain_frames": 1,  # a SynthPain person's sequences and head-pose jitter
    "heldout_rows": 0xE7A1,  # which held-out frames stage 02 scores
    "identity_photos": 0x1D,  # which frames give a person's identity embeddings
    "transfer_targets": 0x7A6,  # which held-out people receive stage 03's transfers
    "scarcity_order": 0xA06,  # the order in which training people keep their pain frames
    "detector_fit": 0xF17,  # each pain detector's initialisation and batches
    "cnn_init": 0xC22,  # the CNN detector's weights and batch order
    "rater_simulation": 0x51A,  # the simulated raters of the realism study
    "scoring_frames": 0x5C0F,  # which unseen frame each person's identity is scored against
    "realism_features": 0xFEA7,  # the realism feature network's weights and batches
    "au_degradation": 0xA0DE,  # the degradations of the learned AU estimator's crops
    "synthpain_wrinkles": 0x3B1,  # where a SynthPain person's AU furrows and wrinkles sit
    "au_reader_renders": 0xA0F5,  # the fresh identities' expressions a pixel AU reader learns
    "au_reader_fit": 0xA0F1,  # a pixel AU reader's batches and their augmentation
    "au_answer_degradation": 0xA0D1,  # degraded copies of exact answers (the AU readers' noise)
    "identity_encoder_frames": 0x1DE0,  # pose, light, backdrop, AUs of the encoder's renders
    "identity_encoder_training": 0x1DE1,  # the identity encoder's batches and augmentation
    "c2st_people": 0xC257,  # the people resampled for the two-sample AUC's interval
}


def stream(purpose: str, *keys: int) -> np.random.Generator:
    """The random generator for ``purpose`` under ``keys`` (base seed first)."""
    if purpose not in PURPOSES:
        raise KeyError(f"unknown random-stream purpose {purpose!r}; add it to seeds.PURPOSES")
    return np.random.default_rng([*(int(k) for k in keys), PURPOSES[purpose]])
