"""SynthPain expression sequences: neutral -> apex -> neutral with FACS-coded AUs.

Half of the sequences are pain (the PSPI AUs with intensities correlated through a latent pain
level, as in real pain faces), the rest non-pain distractors (smiles, brow raises, talking,
surprise) so that PSPI has many zeros and pain detection cannot rely on "any movement".
Intensities are integers (FACS A-E = 1-5, AU43 present/absent), as coders give them.
"""

from __future__ import annotations

import numpy as np

# AUs a SynthPain frame can carry (all exist in the AU->mesh model).
SYNTHPAIN_AUS = (
    "AU01",
    "AU02",
    "AU04",
    "AU06",
    "AU07",
    "AU09",
    "AU10",
    "AU12",
    "AU25",
    "AU26",
    "AU43",
)

DISTRACTORS = {
    "smile": {"AU12": (2, 5), "AU25": (0, 3)},
    "brow_raise": {"AU01": (2, 5), "AU02": (2, 5)},
    "talk": {"AU25": (1, 3), "AU26": (1, 4)},
    "surprise": {"AU01": (2, 5), "AU02": (2, 5), "AU25": (1, 3), "AU26": (2, 5)},
}


def sample_apex(rng: np.random.Generator, pain_probability: float) -> tuple[str, dict[str, float]]:
    """An apex expression: ``("pain", aus)`` or ``(distractor name, aus)``."""
    if rng.random() < pain_probability:
        level = rng.uniform(1.0, 5.0)

        def intensity(p_present: float) -> float:
            if rng.random() >= p_present:
                return 0.0
            return float(np.clip(np.rint(level + rng.normal(0, 1.0)), 1, 5))

        aus = {
            "AU04": intensity(0.85),
            "AU06": intensity(0.75),
            "AU07": intensity(0.8),
            "AU09": intensity(0.4),
            "AU10": intensity(0.5),
            "AU43": float(rng.random() < 0.1 + 0.13 * level),
        }
        if rng.random() < 0.25:
            aus["AU25"] = float(rng.integers(1, 4))
        return "pain", aus
    name = list(DISTRACTORS)[rng.integers(len(DISTRACTORS))]
    aus = {au: float(rng.integers(lo, hi + 1)) for au, (lo, hi) in DISTRACTORS[name].items()}
    return name, aus


def sequence_frames(apex: dict[str, float], n_frames: int) -> list[dict[str, float]]:
    """Frames of one sequence: intensity follows sin(pi t), starting and ending neutral.

    FACS intensities are rounded to integers; AU43 is present only near the apex (envelope >= 0.7).
    """
    if n_frames < 3:
        raise ValueError(
            f"a sequence needs at least 3 frames (neutral, apex, neutral), got {n_frames}"
        )
    frames = []
    for envelope in np.sin(np.pi * np.arange(n_frames) / (n_frames - 1)):
        aus = {}
        for au in SYNTHPAIN_AUS:
            peak = apex.get(au, 0.0)
            if au == "AU43":
                aus[au] = float(peak > 0 and envelope >= 0.7)
            else:
                aus[au] = float(np.floor(peak * envelope + 0.5))
        frames.append(aus)
    return frames
