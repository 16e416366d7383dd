"""The appearance of muscle activation: furrows, wrinkles and bulges that each AU adds to the skin.

Geometry alone (the mesh moving, the painted texture moving with it) leaves a warp of the neutral
photo almost exact. Real pain faces also change *appearance* in exactly the pain AUs, and a warp
cannot create what the neutral photo does not contain:

- AU4 (brow lowerer): vertical furrows between the brows, tissue bunched above the inner brows;
- AU6 (cheek raiser): crow's feet at the outer eye corners, a raised, bulging cheek and the
  infraorbital furrow under it;
- AU7 (lid tightener): a bulging, tightened lower lid with a fine line beneath;
- AU9 (nose wrinkler): horizontal wrinkles across the nasal root, lifted, creased nostril wings;
- AU10 (upper lip raiser): a deepened nasolabial furrow with the cheek pushed up beside it;
- AU12 (lip corner puller): the nasolabial line (a distractor: smiles have it too);
- AU43 (eyes closed): lid skin over the eyeball, its convexity and its darker, thinner skin.

Each AU is a set of maps in the texture's frame (the neutral mesh's frontal plane, the frame the
skin is painted in), so a furrow moves with the skin that carries it: a ``height`` field (furrows
negative, bulges positive) that tilts the shading normals, a ``crease`` map that darkens the
floor of a fold, and for AU43 a ``tint`` that darkens the lid. Maps scale linearly with the AU's
intensity (0-5; AU43 0/1) and with the person's ``wrinkle_depth`` (like age: the same AU is a
faint line on one face and a deep fold on another); each person's furrows sit at their own
positions (count, spacing, angles drawn from the person's seed). A map's ``support`` is the
region it may change: nothing outside it, and nothing at all at intensity 0.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy.ndimage import maximum_filter

from paincontrol_lib.seeds import stream

APPEARANCE_AUS = ("AU04", "AU06", "AU07", "AU09", "AU10", "AU12", "AU43")
FULL_INTENSITY = {"AU43": 1.0}  # the intensity at which an AU's maps reach full strength (else 5)
BUMP_STRENGTH = 2.2  # normal tilt per unit slope of the height field (texture pixels)
SUPPORT_LEVEL = 0.02  # a map changes the skin only where |height| + crease + tint exceeds this
SUPPORT_GROW = 3  # texture pixels added around the support (bilinear lookup reaches one further)
MAX_CREASE, MAX_TINT = 0.85, 0.6  # where folds and lid tint of several AUs add up, they saturate


@dataclass(frozen=True)
class AUMaps:
    """One AU's appearance on one person at full strength, in texture pixels."""

    height: np.ndarray  # (T, T) bulge (+) / furrow (-), unitless height
    crease: np.ndarray  # (T, T) darkening of fold floors, 0-1
    tint: np.ndarray  # (T, T) darkening of thin lid skin, 0-1
    support: np.ndarray  # (T, T) bool: where these maps may change the skin

    @functools.cached_property
    def channels(self) -> np.ndarray:
        """(T, T, 4): the height's slope along u and v, crease, tint: what shading reads."""
        slope_v, slope_u = np.gradient(self.height)
        return np.stack([slope_u, slope_v, self.crease, self.tint], -1)


def strength(au: str, intensity: float) -> float:
    """0-1 strength of an AU's appearance at a FACS intensity (linear; AU43 0/1)."""
    return float(np.clip(intensity / FULL_INTENSITY.get(au, 5.0), 0.0, 1.0))


class _Canvas:
    """Strokes and blobs in texture pixels, rasterised with PIL and blurred into smooth maps."""

    def __init__(self, size: int):
        self.size = size

    def lines(self, paths, width: float, blur: float) -> np.ndarray:
        img = Image.new("L", (self.size, self.size), 0)
        draw = ImageDraw.Draw(img)
        for path in paths:
            draw.line([tuple(p) for p in np.asarray(path)], fill=255,
                      width=max(1, int(round(width))), joint="curve")  # fmt: skip
        return np.asarray(img.filter(ImageFilter.GaussianBlur(blur)), float) / 255

    def blobs(self, centres, radii) -> np.ndarray:
        yy, xx = np.mgrid[0 : self.size, 0 : self.size] + 0.5
        out = np.zeros((self.size, self.size))
        for (cx, cy), (rx, ry) in zip(centres, radii, strict=True):
            out = np.maximum(out, np.exp(-0.5 * (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)))
        return out


def _bezier(p0, p1, p2, n: int = 16) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _normalised(peak_map: np.ndarray) -> np.ndarray:
    return peak_map / max(float(np.abs(peak_map).max()), 1e-9)


def person_maps(uv: np.ndarray, size: int, texture_seed: int) -> dict[str, AUMaps]:
    """Every appearance AU's maps for one person at unit depth.

    ``uv`` (478, 2): the neutral mesh's landmarks in texture pixels (x right, y down).
    ``texture_seed`` places this person's furrows (count, spacing, angles).
    """
    rng = stream("synthpain_wrinkles", texture_seed)
    canvas = _Canvas(size)
    iod = float(np.linalg.norm(uv[33] - uv[263]))  # outer eye corners, texture pixels
    fine, soft = 0.012 * iod, 0.05 * iod  # blur of a fine line, of a soft fold
    maps: dict[str, dict[str, np.ndarray]] = {}
    zero = np.zeros((size, size))

    # AU4: one or two vertical furrows each side of the midline between the inner brows.
    mid = 0.5 * (uv[55] + uv[285])
    top, bottom = mid[1] - 0.13 * iod, uv[168][1] + 0.02 * iod
    n_furrows = int(rng.integers(1, 3))
    furrows = []
    for side in (-1, 1):
        for k in range(n_furrows):
            x = mid[0] + side * (0.07 + 0.06 * k + rng.uniform(-0.015, 0.015)) * iod
            lean = side * rng.uniform(0.0, 0.03) * iod
            furrows.append([(x + lean, top), (x, 0.5 * (top + bottom)), (x - lean, bottom)])
    groove = canvas.lines(furrows, 0.02 * iod, fine)
    bunch = canvas.blobs([uv[55] + [0, -0.06 * iod], uv[285] + [0, -0.06 * iod]],
                         [(0.09 * iod, 0.05 * iod)] * 2)  # fmt: skip
    maps["AU04"] = {"height": 0.6 * bunch - groove, "crease": groove, "tint": zero}

    # AU6: crow's feet fanning out of each outer eye corner, the cheek bulge, the furrow under it.
    feet, infraorbital = [], []
    n_feet = int(rng.integers(2, 5))
    for corner, inner, out in ((33, 133, -1), (263, 362, 1)):
        c = uv[corner]
        for angle in np.linspace(-28, 28, n_feet) + rng.uniform(-6, 6, n_feet):
            a = np.deg2rad(angle)
            direction = np.array([out * np.cos(a), np.sin(a)])
            start = c + direction * 0.05 * iod
            feet.append([start, start + direction * rng.uniform(0.12, 0.18) * iod])
        lower = uv[[corner, 145 if out < 0 else 374, inner]]
        infraorbital.append(lower + [0, 0.16 * iod])
    feet_map = canvas.lines(feet, 0.012 * iod, fine)
    cheek = canvas.blobs([uv[117] + [0, -0.02 * iod], uv[346] + [0, -0.02 * iod]],
                         [(0.13 * iod, 0.08 * iod)] * 2)  # fmt: skip
    under = canvas.lines(infraorbital, 0.015 * iod, soft * 0.5)
    maps["AU06"] = {"height": cheek - 0.8 * feet_map - 0.5 * under,
                    "crease": np.maximum(feet_map, 0.7 * under), "tint": zero}  # fmt: skip

    # AU7: the lower lid bulges and tightens; a fine line runs beneath it.
    lids, lines = [], []
    for margin in ((33, 7, 163, 144, 145, 153, 154, 155, 133),
                   (263, 249, 390, 373, 374, 380, 381, 382, 362)):  # fmt: skip
        path = uv[list(margin)]
        lids.append(path + [0, 0.045 * iod])
        lines.append(path[1:-1] + [0, 0.09 * iod])
    lid = canvas.lines(lids, 0.04 * iod, soft * 0.4)
    line = canvas.lines(lines, 0.012 * iod, fine)
    maps["AU07"] = {"height": lid - 0.7 * line, "crease": line, "tint": zero}

    # AU9: horizontal wrinkles across the nasal root; nostril wings lifted and creased.
    root_top, root_bottom = uv[168][1] - 0.04 * iod, uv[197][1]
    n_lines = int(rng.integers(3, 5))
    rows = np.linspace(root_top, root_bottom, n_lines) + rng.uniform(-0.01, 0.01, n_lines) * iod
    half = 0.16 * iod
    nasal = [[(uv[168][0] - half, y + 0.015 * iod), (uv[168][0], y - 0.015 * iod),
              (uv[168][0] + half, y + 0.015 * iod)] for y in rows]  # fmt: skip
    wrinkles = canvas.lines(nasal, 0.02 * iod, fine)
    wings = canvas.blobs([uv[129], uv[358]], [(0.07 * iod, 0.06 * iod)] * 2)
    lift = [0, -0.02 * iod]
    alar = canvas.lines([uv[[98, 64, 102]] + lift, uv[[327, 294, 331]] + lift], 0.02 * iod, fine)
    maps["AU09"] = {"height": 0.8 * wings - wrinkles - 0.6 * alar,
                    "crease": np.maximum(wrinkles, 0.9 * alar), "tint": zero}  # fmt: skip

    # AU10 / AU12: the nasolabial furrow from the nose wing to beside the mouth corner.
    def nasolabial(reach: float) -> list[np.ndarray]:
        paths = []
        for wing, corner, out in ((129, 61, -1), (358, 291, 1)):
            start = uv[wing] + [out * 0.03 * iod, 0.0]
            end = uv[corner] + [out * 0.1 * iod, reach * iod]
            bend = 0.5 * (start + end) + [out * 0.07 * iod, 0.0]
            paths.append(_bezier(start, bend, end))
        return paths

    fold = canvas.lines(nasolabial(0.06), 0.02 * iod, fine * 1.5)
    pushed = canvas.blobs([uv[205] + [-0.04 * iod, 0], uv[425] + [0.04 * iod, 0]],
                          [(0.08 * iod, 0.07 * iod)] * 2)  # fmt: skip
    maps["AU10"] = {"height": 0.7 * pushed - fold, "crease": fold, "tint": zero}
    smile = canvas.lines(nasolabial(0.12), 0.016 * iod, fine * 1.5)
    maps["AU12"] = {"height": -0.8 * smile, "crease": 0.8 * smile, "tint": zero}

    # AU43: the closed lid over the eyeball: its convexity and thin, darker skin.
    lid_regions = []
    for upper, brow in (((33, 246, 161, 160, 159, 158, 157, 173, 133), (46, 53, 52, 65, 55)),
                        ((263, 466, 388, 387, 386, 385, 384, 398, 362),
                         (276, 283, 282, 295, 285))):  # fmt: skip
        margin = uv[list(upper)]
        crease = margin + 0.45 * (uv[list(brow)][np.linspace(0, 4, len(upper)).round().astype(int)]
                                  - margin)  # fmt: skip
        lid_regions.append(np.vstack([margin, crease[::-1]]))
    img = Image.new("L", (size, size), 0)
    for poly in lid_regions:
        ImageDraw.Draw(img).polygon([tuple(p) for p in poly], fill=255)
    lid_skin = np.asarray(img.filter(ImageFilter.GaussianBlur(soft * 0.4)), float) / 255
    eyeball = canvas.blobs([uv[159] + [0, 0.02 * iod], uv[386] + [0, 0.02 * iod]],
                           [(0.14 * iod, 0.07 * iod)] * 2)  # fmt: skip
    crease_line = canvas.lines([poly[len(poly) // 2 :] for poly in lid_regions], 0.012 * iod, fine)
    maps["AU43"] = {"height": eyeball * lid_skin - 0.6 * crease_line,
                    "crease": crease_line, "tint": 0.6 * lid_skin}  # fmt: skip

    out = {}
    for au, m in maps.items():
        height = _normalised(m["height"])
        crease, tint = np.clip(m["crease"], 0, 1), np.clip(m["tint"], 0, 1)
        reach = np.abs(height) + crease + tint > SUPPORT_LEVEL
        support = maximum_filter(reach, size=2 * SUPPORT_GROW + 1)
        out[au] = AUMaps(np.where(support, height, 0.0), np.where(support, crease, 0.0),
                         np.where(support, tint, 0.0), support)  # fmt: skip
    return out


def active(facs: dict[str, float]) -> dict[str, float]:
    """The appearance AUs these intensities activate, with their 0-1 strengths."""
    strengths = {au: strength(au, facs.get(au, 0.0)) for au in APPEARANCE_AUS}
    return {au: s for au, s in strengths.items() if s > 0}
