"""SynthPain identities: face shape, colouring, hair, lighting and head pose of one person.

An identity is fully determined by ``(seed, subject index)``, so any stage can re-render a
person (for instance the exact answer of a transfer) without reading the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from paincontrol_lib import facemesh
from paincontrol_lib.au_to_mesh import AUMeshModel
from paincontrol_lib.seeds import stream

# Skin tones (linear-ish sRGB 0-1), from very light to very dark, sampled with jitter.
SKIN_TONES = np.array(
    [
        [0.96, 0.80, 0.69],
        [0.90, 0.72, 0.60],
        [0.83, 0.63, 0.50],
        [0.72, 0.53, 0.40],
        [0.58, 0.41, 0.30],
        [0.45, 0.31, 0.22],
        [0.33, 0.22, 0.16],
    ]
)
HAIR_COLOURS = np.array(
    [
        [0.08, 0.06, 0.05],
        [0.20, 0.13, 0.08],
        [0.38, 0.25, 0.14],
        [0.62, 0.48, 0.30],
        [0.80, 0.68, 0.45],
        [0.55, 0.53, 0.52],
        [0.45, 0.18, 0.08],
    ]
)
IRIS_COLOURS = np.array(
    [[0.25, 0.15, 0.08], [0.40, 0.25, 0.12], [0.30, 0.45, 0.60], [0.35, 0.50, 0.35]]
)
HAIR_STYLES = ("short", "long", "bald", "bun")


@dataclass(frozen=True)
class Identity:
    subject: str
    shape: np.ndarray  # (478, 3) neutral mesh of this person, model frame
    skin: np.ndarray
    hair: np.ndarray
    brow: np.ndarray
    lip: np.ndarray
    iris: np.ndarray
    clothes: np.ndarray
    background: np.ndarray  # (2, 3) top and bottom colour
    hair_style: str
    brow_density: float
    light: np.ndarray  # unit vector toward the light, camera frame (x right, y up, z to camera)
    ambient: float
    pose: np.ndarray  # (yaw, pitch, roll) in degrees
    offset: np.ndarray  # face-centre offset in the frame, fraction of the image size
    texture_seed: int
    wrinkle_depth: float = 1.0  # how deep this person's AU furrows and bulges are (like age)


def _bump(points: np.ndarray, centre: np.ndarray, sigma: float) -> np.ndarray:
    d2 = ((points - centre) ** 2).sum(-1)
    return np.exp(-0.5 * d2 / sigma**2)[:, None]


def _local_scale(
    mesh: np.ndarray, idx, scale: np.ndarray, sigma: float, anchor: np.ndarray | None = None
) -> np.ndarray:
    """Smoothly scale the neighbourhood of the points ``idx`` about their centre."""
    centre = mesh[list(idx)].mean(0) if anchor is None else anchor
    weight = _bump(mesh, centre, sigma)
    return (mesh - centre) * (np.asarray(scale) - 1.0) * weight


def sample_shape(model: AUMeshModel, rng: np.random.Generator) -> np.ndarray:
    """A person's neutral mesh: the model's neutral face under smooth random deformations."""
    base = model.neutral
    u = model.iod  # deformations are expressed in inter-ocular units
    centre = base.mean(0)
    mesh = base.copy()
    # Global proportions: width, height, depth.
    mesh = centre + (mesh - centre) * rng.uniform([0.88, 0.9, 0.8], [1.12, 1.1, 1.2])
    # Random smooth bumps anywhere on the face.
    for _ in range(8):
        c = mesh[rng.integers(0, facemesh.N_POINTS)]
        mesh = mesh + _bump(mesh, c, rng.uniform(0.15, 0.35) * u) * rng.normal(0, 0.03 * u, 3)
    delta = np.zeros_like(mesh)
    eye_scale = rng.uniform(0.85, 1.18)
    for eye in (facemesh.boundary_loops()["right_eye"], facemesh.boundary_loops()["left_eye"]):
        delta += _local_scale(mesh, eye, [eye_scale, eye_scale, 1.0], 0.14 * u)
    nose = (1, 4, 5, 48, 278, 64, 294, 98, 327)
    delta += _local_scale(mesh, nose, [rng.uniform(0.8, 1.25), rng.uniform(0.9, 1.15), 1], 0.16 * u)
    lips = facemesh.boundary_loops()["inner_lips"]
    delta += _local_scale(
        mesh, lips, [rng.uniform(0.85, 1.18), rng.uniform(0.75, 1.35), 1.0], 0.18 * u
    )
    jaw = mesh[facemesh.CHIN] + np.array([0, 0.25 * u, 0])
    delta += _local_scale(mesh, (), [rng.uniform(0.88, 1.12), 1.0, 1.0], 0.45 * u, anchor=jaw)
    # Brow thickness and height: move the upper brow lines, then both lines.
    upper = list(facemesh.RIGHT_BROW_UPPER + facemesh.LEFT_BROW_UPPER)
    brows = upper + list(facemesh.RIGHT_BROW_LOWER + facemesh.LEFT_BROW_LOWER)
    thickness = rng.uniform(-0.015, 0.03) * u
    height = rng.uniform(-0.03, 0.04) * u
    for i in upper:
        delta += _bump(mesh, mesh[i], 0.05 * u) * np.array([0, thickness, 0]) / 2.5
    for i in brows:
        delta += _bump(mesh, mesh[i], 0.06 * u) * np.array([0, height, 0]) / 3.0
    return mesh + delta


def sample_identity(model: AUMeshModel, seed: int, index: int) -> Identity:
    """The SynthPain person number ``index`` for dataset ``seed`` (deterministic)."""
    rng = stream("synthpain_identity", seed, index)
    tone = rng.uniform(0, len(SKIN_TONES) - 1)
    lo = int(np.floor(tone))
    skin = SKIN_TONES[lo] + (tone - lo) * (
        SKIN_TONES[min(lo + 1, len(SKIN_TONES) - 1)] - SKIN_TONES[lo]
    )
    skin = np.clip(skin * rng.uniform(0.95, 1.05, 3), 0, 1)
    hair = np.clip(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.85, 1.15, 3), 0, 1)
    brow = np.clip(0.55 * hair + 0.45 * HAIR_COLOURS[0] * rng.uniform(0.8, 1.2), 0, 1)
    lip = np.clip(skin * np.array([0.95, 0.62, 0.62]) * rng.uniform(0.85, 1.05), 0, 1)
    light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(0.0, 0.6), 1.0])
    hue = rng.uniform(0, 1, 3)
    return Identity(
        subject=f"S{index:03d}",
        shape=sample_shape(model, rng),
        skin=skin,
        hair=hair,
        brow=brow,
        lip=lip,
        iris=IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))] * rng.uniform(0.8, 1.2),
        clothes=np.clip(rng.uniform(0.1, 0.9, 3), 0, 1),
        background=np.stack([0.35 + 0.5 * hue, 0.25 + 0.45 * hue[::-1]]),
        hair_style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
        brow_density=float(rng.uniform(0.6, 1.0)),
        light=light / np.linalg.norm(light),
        ambient=float(rng.uniform(0.3, 0.5)),
        pose=rng.uniform([-10, -8, -6], [10, 8, 6]),
        offset=rng.uniform(-0.03, 0.03, 2),
        texture_seed=int(rng.integers(2**31)),
        wrinkle_depth=float(rng.uniform(0.6, 1.4)),  # drawn last: earlier draws keep their values
    )
