"""Image arrays and files: any image as RGB uint8, image files read robustly, upscaling."""

from __future__ import annotations

import numpy as np


def as_rgb_uint8(image) -> np.ndarray:
    """Any image array (grey, RGB, RGBA; uint8 or float 0-1) -> contiguous RGB uint8."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an H x W (x 1|3|4) image, got shape {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def load_image(path) -> np.ndarray:
    """Read an image file as RGB uint8 (EXIF orientation applied, grey/RGBA/16-bit converted).

    Raises ``ValueError`` naming the file for anything unreadable.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.format in ("JPEG", "TIFF", "WEBP", "MPO"):  # formats that carry EXIF
                img = ImageOps.exif_transpose(img)
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(img, dtype=np.float64)
                arr = arr / max(arr.max(), 1.0)
                return as_rgb_uint8(arr)
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as exc:
        raise ValueError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc


UPSCALE = 192  # generated 64 px faces are meshed and embedded at this size (MediaPipe needs more)


def upscale(image: np.ndarray, size: int = UPSCALE) -> np.ndarray:
    """A square image resized (bicubic) to ``size`` px, e.g. before MediaPipe or dlib see it."""
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))
