"""Render a SynthPain face: z-buffered, shaded, textured triangles of the 478-point mesh.

Pipeline per image: identity mesh + AU displacement (``au_to_mesh``) -> head pose -> orthographic
projection -> supersampled numpy rasterisation of the 852 mesh triangles with a z-buffer ->
per-pixel texture lookup (texture painted in the neutral mesh's frontal plane, so brows, lips
and lash lines move with the vertices that carry them, sampled bilinearly) and Lambertian +
specular shading with normals interpolated across each triangle -> area downsampling. With
``appearance`` on (the default), each active AU also changes the skin in the same texture frame
(:mod:`.appearance`: furrows, wrinkles and bulges as crease darkening and bumped normals), so
what a warp of the neutral photo cannot create is in the exact answer; off, the renders are
geometry only. Eyeballs and the mouth interior are drawn *behind* the mesh, so they are only
seen through the eye and inner-lip holes of the tessellation: when AU43 or AU7 bring the lids
together, the lids really cover the eyes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy.ndimage import maximum_filter

from paincontrol_lib import facemesh
from paincontrol_lib.au_to_mesh import AUMeshModel
from paincontrol_lib.data.synthpain import appearance as skin
from paincontrol_lib.data.synthpain.identity import Identity

TEXTURE_SIZE = 256
CREASE_DARKNESS = 0.6  # albedo lost at the floor of a full-strength fold
LID_TINT = np.array([0.22, 0.3, 0.26])  # albedo lost per unit tint: thin lid skin, darker, bluish
# Outer lip contour (MediaPipe), in order around the mouth.
OUTER_LIPS = (
    61,
    146,
    91,
    181,
    84,
    17,
    314,
    405,
    321,
    375,
    291,
    409,
    270,
    269,
    267,
    0,
    37,
    39,
    40,
    185,
)
UPPER_MARGIN_RIGHT = (33, 246, 161, 160, 159, 158, 157, 173, 133)
LOWER_MARGIN_RIGHT = (33, 7, 163, 144, 145, 153, 154, 155, 133)
UPPER_MARGIN_LEFT = (263, 466, 388, 387, 386, 385, 384, 398, 362)
LOWER_MARGIN_LEFT = (263, 249, 390, 373, 374, 380, 381, 382, 362)
UPPER_INNER_LIP_PATH = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER_LIP_PATH = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)


@dataclass(frozen=True)
class Rendered:
    image: np.ndarray  # (H, W, 3) uint8
    landmarks_2d: np.ndarray  # (478, 2) image pixels, x right, y down, pixel i spans [i, i+1)
    landmarks_3d: np.ndarray  # (478, 3) same x, y; z in pixels toward the camera


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Head rotation (degrees) in the model frame: yaw about y, pitch about x, roll about z."""
    y, p, r = np.deg2rad([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def project(
    mesh: np.ndarray,
    identity: Identity,
    pose: np.ndarray,
    size: int,
    face_fraction: float,
) -> np.ndarray:
    """Model-frame mesh -> (478, 3) image coordinates (y down, z toward the camera).

    Scale and centre come from the identity's neutral face, so expressions move landmarks
    within a fixed frame: forehead-top-to-chin spans ``face_fraction`` of the image height.
    """
    neutral = identity.shape
    top, chin = neutral[facemesh.FOREHEAD_TOP], neutral[facemesh.CHIN]
    centre = 0.5 * (top + chin)
    scale = face_fraction * size / (top[1] - chin[1])
    rotated = (mesh - centre) @ rotation(*pose).T
    out = np.empty_like(rotated)
    out[:, 0] = size * (0.5 + identity.offset[0]) + scale * rotated[:, 0]
    out[:, 1] = size * (0.5 + identity.offset[1]) - scale * rotated[:, 1]
    out[:, 2] = scale * rotated[:, 2]
    return out


def rasterize(verts: np.ndarray, tris: np.ndarray, height: int, width: int):
    """Z-buffered rasterisation of front-facing triangles at pixel centres.

    ``verts`` (V, 3): x, y in pixels (y down), z toward the camera. Returns ``tri_id`` (H, W)
    (-1 where empty) and barycentric weights (H, W, 3). Vectorised over all triangles at once:
    each triangle's bounding box is padded to the largest box, candidates are ordered by
    (pixel, depth) and the nearest wins.
    """
    p = verts[tris]  # (T, 3, 3)
    e1, e2 = p[:, 1, :2] - p[:, 0, :2], p[:, 2, :2] - p[:, 0, :2]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    keep = area < -1e-9  # counter-clockwise with y up == clockwise with y down: front-facing
    tri_index = np.nonzero(keep)[0]
    p, area = p[keep], area[keep]
    lo = np.floor(p[:, :, :2].min(1) - 0.5).astype(int)
    hi = np.ceil(p[:, :, :2].max(1) - 0.5).astype(int)
    lo = np.clip(lo, 0, [width - 1, height - 1])
    hi = np.clip(hi, 0, [width - 1, height - 1])
    span = int(max((hi - lo).max(), 0)) + 1
    offs = np.arange(span)
    px = lo[:, 0, None, None] + offs[None, None, :]  # (T, 1, S)
    py = lo[:, 1, None, None] + offs[None, :, None]  # (T, S, 1)
    cx, cy = px + 0.5, py + 0.5

    def edge(a, b):
        return (b[:, 0, None, None] - a[:, 0, None, None]) * (cy - a[:, 1, None, None]) - (
            b[:, 1, None, None] - a[:, 1, None, None]
        ) * (cx - a[:, 0, None, None])

    w0 = edge(p[:, 1], p[:, 2]) / area[:, None, None]
    w1 = edge(p[:, 2], p[:, 0]) / area[:, None, None]
    w2 = 1.0 - w0 - w1
    inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
    inside &= (px <= hi[:, 0, None, None]) & (py <= hi[:, 1, None, None])
    t_idx, r, c = np.nonzero(inside)
    xs, ys = px[t_idx, 0, c], py[t_idx, r, 0]
    b = np.stack([w0[t_idx, r, c], w1[t_idx, r, c], w2[t_idx, r, c]], -1)
    z = (b * p[t_idx, :, 2]).sum(-1)
    pix = ys * width + xs
    order = np.lexsort((z, pix))
    pix, t_idx, b = pix[order], t_idx[order], b[order]
    last = np.ones(len(pix), bool)
    last[:-1] = pix[1:] != pix[:-1]
    tri_id = np.full(height * width, -1, np.int32)
    bary = np.zeros((height * width, 3))
    tri_id[pix[last]] = tri_index[t_idx[last]]
    bary[pix[last]] = b[last]
    return tri_id.reshape(height, width), bary.reshape(height, width, 3)


def vertex_normals(verts: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Area-weighted unit normals in a right-handed frame (x right, y up, z to camera)."""
    v = verts * np.array([1.0, -1.0, 1.0])  # image y down -> y up
    n = np.cross(v[tris[:, 1]] - v[tris[:, 0]], v[tris[:, 2]] - v[tris[:, 0]])
    out = np.zeros_like(v)
    for k in range(3):
        np.add.at(out, tris[:, k], n)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


class Renderer:
    """Renders identities with given FACS intensities and pose; caches textures per identity."""

    def __init__(
        self,
        model: AUMeshModel,
        size: int = 128,
        face_fraction: float = 0.6,
        supersample: int = 2,
        appearance: bool = True,
    ):
        if size < 32:
            raise ValueError(f"image size {size} is too small to draw a face (need >= 32 px)")
        if not 0.2 <= face_fraction <= 0.9:
            raise ValueError(f"face_fraction={face_fraction} must lie in [0.2, 0.9]")
        self.model = model
        self.size = size
        self.face_fraction = face_fraction
        self.supersample = supersample
        self.appearance = appearance
        self.tris = facemesh.orient_front_facing(facemesh.triangles(), model.neutral)
        lo, hi = model.neutral[:, :2].min(0), model.neutral[:, :2].max(0)
        pad = 0.03 * (hi - lo)
        self._uv_lo, self._uv_span = lo - pad, (hi - lo) + 2 * pad
        self._textures: dict[str, np.ndarray] = {}
        self._skin_maps: dict[str, dict[str, skin.AUMaps]] = {}

    # -- texture ------------------------------------------------------------------------------
    def _uv(self, points: np.ndarray) -> np.ndarray:
        """Model-frame x, y -> texture pixel coordinates (row 0 at the top of the face)."""
        t = (points[..., :2] - self._uv_lo) / self._uv_span
        return np.stack([t[..., 0], 1.0 - t[..., 1]], -1) * (TEXTURE_SIZE - 1)

    def texture(self, identity: Identity) -> np.ndarray:
        if identity.subject not in self._textures:
            self._textures[identity.subject] = self._paint_texture(identity)
        return self._textures[identity.subject]

    def skin_maps(self, identity: Identity) -> dict[str, skin.AUMaps]:
        """The person's AU appearance maps at unit depth (texture frame), cached."""
        if identity.subject not in self._skin_maps:
            uv = self._uv(self.model.neutral)
            self._skin_maps[identity.subject] = skin.person_maps(uv, TEXTURE_SIZE,
                                                                 identity.texture_seed)  # fmt: skip
        return self._skin_maps[identity.subject]

    def _paint_texture(self, identity: Identity) -> np.ndarray:
        rng = np.random.default_rng(identity.texture_seed)
        uv = self._uv(self.model.neutral)
        size = TEXTURE_SIZE

        def smooth_noise(scale: float, blur: float) -> np.ndarray:
            n = Image.fromarray(
                ((rng.normal(0, 1, (size, size)) * 40) + 128).clip(0, 255).astype(np.uint8)
            )
            n = np.asarray(n.filter(ImageFilter.GaussianBlur(blur)), float) / 255 - 0.5
            return n / max(n.std(), 1e-6) * scale

        tex = np.ones((size, size, 3)) * identity.skin
        tex *= 1 + smooth_noise(0.05, 8)[..., None]
        tex *= 1 + smooth_noise(0.025, 1)[..., None]

        def mask(polys, width: int = 0, blur: float = 1.0, closed: bool = True) -> np.ndarray:
            img = Image.new("L", (size, size), 0)
            draw = ImageDraw.Draw(img)
            for poly in polys:
                pts = [tuple(q) for q in uv[list(poly)]]
                if closed and width == 0:
                    draw.polygon(pts, fill=255)
                else:
                    draw.line(pts, fill=255, width=width, joint="curve")
            if blur:
                img = img.filter(ImageFilter.GaussianBlur(blur))
            return np.asarray(img, float)[..., None] / 255

        def blend(m: np.ndarray, colour: np.ndarray, alpha: float = 1.0):
            nonlocal tex
            tex = tex * (1 - alpha * m) + alpha * m * colour

        # Cheeks warmer, eye sockets darker.
        cheeks = mask([(50, 101, 36, 205, 187, 123), (280, 330, 266, 425, 411, 352)], blur=10)
        blend(cheeks, identity.skin * np.array([1.05, 0.8, 0.78]), 0.5)
        sockets = mask(
            [UPPER_MARGIN_RIGHT + (65, 52, 53, 46), UPPER_MARGIN_LEFT + (295, 282, 283, 276)],
            blur=5,
        )
        blend(sockets, identity.skin * 0.7, 0.45)
        blend(mask([OUTER_LIPS], blur=1.2), identity.lip, 0.9)
        brows = [
            facemesh.RIGHT_BROW_UPPER + facemesh.RIGHT_BROW_LOWER[::-1],
            facemesh.LEFT_BROW_UPPER + facemesh.LEFT_BROW_LOWER[::-1],
        ]
        brow_mask = mask(brows, blur=1.0)
        strands = 0.75 + smooth_noise(0.25, 0.6)[..., None]
        blend(brow_mask * np.clip(strands, 0, 1), identity.brow, identity.brow_density)
        lash = identity.hair * 0.3
        blend(mask([UPPER_MARGIN_RIGHT, UPPER_MARGIN_LEFT], width=5, blur=0.8, closed=False), lash)
        blend(
            mask([LOWER_MARGIN_RIGHT, LOWER_MARGIN_LEFT], width=2, blur=0.8, closed=False),
            lash,
            0.6,
        )
        nostrils = mask(
            [(79, 166, 218, 239, 238, 20, 60, 75), (309, 392, 438, 459, 458, 250, 290, 305)], blur=2
        )
        blend(nostrils, identity.skin * 0.45, 0.7)
        return np.clip(tex, 0, 1)

    # -- image --------------------------------------------------------------------------------
    def mesh(self, identity: Identity, facs: np.ndarray) -> np.ndarray:
        """The identity's mesh with these FACS intensities (model frame)."""
        return self.model.expression_mesh(facs, base=identity.shape)

    def render(self, identity: Identity, facs, pose_jitter=(0.0, 0.0, 0.0), rng=None) -> Rendered:
        """Render ``identity`` with FACS intensities (mapping or vector) and extra pose (deg)."""
        facs = self.model.facs_vector(facs) if isinstance(facs, dict) else np.asarray(facs, float)
        pose = identity.pose + np.asarray(pose_jitter, float)
        verts = project(self.mesh(identity, facs), identity, pose, self.size, self.face_fraction)
        s = self.supersample
        n = self.size * s
        big = verts * s
        canvas = self._backdrop(identity, big, n)
        self._eyes_and_mouth(identity, big, canvas)
        face, uv, normals = self._surface(big)
        lookup = _Bilinear(uv, TEXTURE_SIZE)
        albedo = lookup(self.texture(identity))
        change = self._skin_change(identity, facs, lookup)
        if change is not None:  # only the pixels inside an active AU's region change
            inside, slope, crease, tint = change
            # Texture u runs along image x, v down the image; normals have y up.
            bumped = normals[inside] + skin.BUMP_STRENGTH * np.column_stack(
                [-slope[:, 0], slope[:, 1], np.zeros(len(slope))]
            )
            normals[inside] = bumped / np.maximum(
                np.linalg.norm(bumped, axis=1, keepdims=True), 1e-9
            )
            albedo[inside] *= (1 - CREASE_DARKNESS * crease)[:, None]
            albedo[inside] *= 1 - tint[:, None] * LID_TINT
        diffuse = np.clip(normals @ identity.light, 0, 1)
        half = identity.light + np.array([0, 0, 1.0])
        half /= np.linalg.norm(half)
        spec = 0.12 * np.clip(normals @ half, 0, 1) ** 24
        shade = identity.ambient + (1 - identity.ambient) * diffuse
        canvas[face] = albedo * shade[:, None] + spec[:, None]
        img = canvas.reshape(self.size, s, self.size, s, 3).mean((1, 3))
        if rng is not None:
            img = img + rng.normal(0, 0.01, img.shape)
        image = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
        return Rendered(image=image, landmarks_2d=verts[:, :2].copy(), landmarks_3d=verts.copy())

    def _surface(self, big: np.ndarray):
        """Rasterised skin at the supersampled size: face mask, texture coordinates and
        interpolated unit normals of every face pixel."""
        n = self.size * self.supersample
        tri_id, bary = rasterize(big, self.tris, n, n)
        face = tri_id >= 0
        tris = self.tris[tri_id[face]]
        w = bary[face][..., None]
        uv = (self._uv(self.model.neutral)[tris] * w).sum(1)
        normals = (vertex_normals(big, self.tris)[tris] * w).sum(1)
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-9)
        return face, uv, normals

    def _skin_change(self, identity: Identity, facs: np.ndarray, lookup: _Bilinear):
        """The skin change of the active appearance AUs at the rasterised face pixels:
        ``(inside, slope (M, 2), crease (M,), tint (M,))`` for the M pixels ``inside`` their
        regions, or None (appearance off, or no appearance AU active: the geometry-only
        render, exactly)."""
        if not self.appearance:
            return None
        named = dict(zip(self.model.au_columns, facs, strict=True))
        maps = self.skin_maps(identity)
        active = skin.active(named)
        if not active:
            return None
        support = np.logical_or.reduce([maps[au].support for au in active]).ravel()
        inside = support[lookup.corners].any(1)
        near = lookup.subset(inside)
        scale = np.array([1.0, 1.0, 1.0, 0.0]) * identity.wrinkle_depth + [0, 0, 0, 1.0]
        sampled = sum(strength * near(maps[au].channels) for au, strength in active.items())
        sampled = sampled * scale  # folds scale with the person's depth, lid tint does not
        crease = np.clip(sampled[:, 2], 0, skin.MAX_CREASE)
        return inside, sampled[:, :2], crease, np.clip(sampled[:, 3], 0, skin.MAX_TINT)

    def au_region(self, identity: Identity, au: str, facs, pose_jitter=(0.0, 0.0, 0.0)):
        """(size, size) bool: the output pixels whose skin ``au``'s appearance may change when
        the face wears ``facs`` at this pose (its support in the texture frame, seen through
        the rasterised mesh, one pixel added for the area downsampling)."""
        facs = self.model.facs_vector(facs) if isinstance(facs, dict) else np.asarray(facs, float)
        pose = identity.pose + np.asarray(pose_jitter, float)
        verts = project(self.mesh(identity, facs), identity, pose, self.size, self.face_fraction)
        s = self.supersample
        face, uv, _ = self._surface(verts * s)
        support = self.skin_maps(identity)[au].support.astype(float)[..., None]
        inside = _Bilinear(uv, TEXTURE_SIZE)(support)[:, 0] > 0
        big = np.zeros((self.size * s, self.size * s), bool)
        big[face] = inside
        small = big.reshape(self.size, s, self.size, s).any((1, 3))
        return maximum_filter(small, size=3)

    def _backdrop(self, identity: Identity, v: np.ndarray, n: int) -> np.ndarray:
        """Background, clothes, neck, hair, ears and skull: everything behind the face mesh."""
        t = np.linspace(0, 1, n)[:, None, None]
        top, bottom = identity.background
        canvas = np.broadcast_to(top * (1 - t) + bottom * t, (n, n, 3)).copy()
        img = Image.fromarray((canvas * 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        col = lambda c, k=1.0: tuple(int(x) for x in np.clip(np.asarray(c) * k * 255, 0, 255))  # noqa: E731
        oval = v[facemesh.boundary_loops()["face_oval"], :2]
        fx0, fy0 = oval.min(0)
        fx1, fy1 = oval.max(0)
        fw, fh = fx1 - fx0, fy1 - fy0
        cx = 0.5 * (fx0 + fx1)
        chin = v[facemesh.CHIN]
        shoulder_y = chin[1] + 0.3 * fh
        draw.polygon(
            [
                (cx - 1.1 * fw, n),
                (cx - 0.75 * fw, shoulder_y),
                (cx + 0.75 * fw, shoulder_y),
                (cx + 1.1 * fw, n),
            ],
            fill=col(identity.clothes),
        )
        draw.rectangle(
            [cx - 0.28 * fw, chin[1] - 0.3 * fh, cx + 0.28 * fw, shoulder_y + 0.05 * fh],
            fill=col(identity.skin, 0.72),
        )
        hair = col(identity.hair)
        if identity.hair_style == "long":
            draw.rounded_rectangle(
                [fx0 - 0.12 * fw, fy0 - 0.1 * fh, fx1 + 0.12 * fw, chin[1] + 0.25 * fh],
                radius=int(0.4 * fw),
                fill=hair,
            )
        for lateral in (234, 454):
            ex, ey = v[lateral, :2]
            draw.ellipse(
                [ex - 0.08 * fw, ey - 0.13 * fh, ex + 0.08 * fw, ey + 0.1 * fh],
                fill=col(identity.skin, 0.8),
            )
        draw.ellipse(
            [fx0 + 0.02 * fw, fy0 - 0.12 * fh, fx1 - 0.02 * fw, fy0 + 0.6 * fh],
            fill=col(identity.skin, 0.85),
        )
        if identity.hair_style != "bald":
            draw.chord(
                [fx0 - 0.06 * fw, fy0 - 0.2 * fh, fx1 + 0.06 * fw, fy0 + 0.55 * fh],
                180,
                360,
                fill=hair,
            )
        if identity.hair_style == "bun":
            draw.ellipse(
                [cx - 0.18 * fw, fy0 - 0.38 * fh, cx + 0.18 * fw, fy0 - 0.08 * fh], fill=hair
            )
        draw.polygon([tuple(p) for p in oval], fill=col(identity.skin, 0.7))
        return np.asarray(img, float) / 255

    def _eyes_and_mouth(self, identity: Identity, v: np.ndarray, canvas: np.ndarray) -> None:
        """Eyeballs and the mouth interior, painted where the mesh has holes."""
        n = canvas.shape[0]
        loops = facemesh.boundary_loops()
        yy, xx = np.mgrid[0:n, 0:n] + 0.5
        for loop, centre, ring in (
            (loops["right_eye"], facemesh.RIGHT_IRIS_CENTER, facemesh.RIGHT_IRIS_RING),
            (loops["left_eye"], facemesh.LEFT_IRIS_CENTER, facemesh.LEFT_IRIS_RING),
        ):
            hole = _polygon_mask(v[loop, :2], n, grow=1.5)
            if not hole.any():
                continue
            c = v[centre, :2]
            r = np.linalg.norm(v[list(ring), :2] - c, axis=1).mean()
            d = np.hypot(xx - c[0], yy - c[1])
            top_y = v[loop, 1].min()
            eye_h = max(v[loop, 1].max() - top_y, 1.0)
            lid_shadow = 1 - 0.35 * np.exp(-np.clip(yy - top_y, 0, None) / (0.35 * eye_h))
            colour = np.empty((n, n, 3))
            colour[:] = np.array([0.93, 0.91, 0.88])
            iris = d < r
            limbus = np.clip((d - 0.75 * r) / (0.25 * r), 0, 1)[..., None]
            colour[iris] = (identity.iris * (1 - 0.5 * limbus))[iris]
            colour[d < 0.45 * r] = 0.03
            glint = np.hypot(xx - c[0] + 0.3 * r, yy - c[1] + 0.3 * r) < 0.16 * r
            colour[glint] = 0.95
            colour *= lid_shadow[..., None]
            canvas[hole] = colour[hole]
        lips = loops["inner_lips"]
        hole = _polygon_mask(v[lips, :2], n, grow=1.5)
        if hole.any():
            canvas[hole] = identity.lip * 0.25
            iod = np.linalg.norm(v[facemesh.RIGHT_EYE_OUTER, :2] - v[facemesh.LEFT_EYE_OUTER, :2])
            upper = v[list(UPPER_INNER_LIP_PATH), :2]
            lower = v[list(LOWER_INNER_LIP_PATH), :2]
            teeth = _polygon_mask(np.vstack([upper, upper[::-1] + [0, 0.09 * iod]]), n)
            teeth |= _polygon_mask(np.vstack([lower, lower[::-1] - [0, 0.05 * iod]]), n)
            canvas[hole & teeth] = np.array([0.88, 0.86, 0.78])


class _Bilinear:
    """Bilinear sampling of (T, T, C) texture-frame grids at texture coordinates ``uv`` (N, 2):
    the corners and weights are found once and serve every grid sampled at the same points."""

    def __init__(self, uv: np.ndarray, size: int):
        u = np.clip(uv[:, 0], 0, size - 1)
        v = np.clip(uv[:, 1], 0, size - 1)
        u0 = np.minimum(np.floor(u).astype(int), size - 2)
        v0 = np.minimum(np.floor(v).astype(int), size - 2)
        fu, fv = (u - u0)[:, None], (v - v0)[:, None]
        first = v0 * size + u0
        self.corners = np.stack([first, first + 1, first + size, first + size + 1], 1)
        self.weights = ((1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv)

    def subset(self, keep: np.ndarray) -> _Bilinear:
        """The same sampler at the points ``keep`` selects."""
        out = object.__new__(_Bilinear)
        out.corners, out.weights = self.corners[keep], tuple(w[keep] for w in self.weights)
        return out

    def __call__(self, grid: np.ndarray) -> np.ndarray:
        flat = grid.reshape(-1, grid.shape[-1])
        c, w = self.corners, self.weights
        return (
            flat[c[:, 0]] * w[0]
            + flat[c[:, 1]] * w[1]
            + flat[c[:, 2]] * w[2]
            + (flat[c[:, 3]] * w[3])
        )


def _polygon_mask(points: np.ndarray, n: int, grow: float = 0.0) -> np.ndarray:
    img = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(img)
    pts = [tuple(p) for p in points]
    draw.polygon(pts, fill=1)
    if grow:
        draw.line(pts + [pts[0]], fill=1, width=max(1, int(round(grow))))
    return np.asarray(img, bool)


@functools.cache
def default_renderer(
    size: int = 128, face_fraction: float = 0.6, supersample: int = 2, appearance: bool = True
) -> Renderer:
    from paincontrol_lib.au_to_mesh import default_model

    return Renderer(default_model(), size, face_fraction, supersample, appearance)
