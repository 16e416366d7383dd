"""Any folder of face images, optionally with a CSV of subjects and AUs.

Layout under the dataset root::

    <any sub-folders>/<image files>        (.png .jpg .jpeg .bmp .tif .tiff .webp)
    labels.csv (optional, or labels=...)   an image column, optional subject and AU columns

Without labels, AUs are NaN (unknown) and the subject is the image's folder relative to the root,
its parts joined by ``__`` (``site_a/2019/p01/1.png`` is ``site_a__2019__p01``), so people in
same-named folders of different branches stay apart; an image directly under the root is its
own subject (its file name without suffix). Ids contain no ``/`` and are safe as file names
downstream. Two folders that would give one id (a folder name containing ``__``, or an image
``alice.png`` beside a folder ``alice/``) are an error naming both, never one merged person.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from paincontrol_lib.data.delaware import read_label_table
from paincontrol_lib.data.records import LayoutError, finish_records, list_images

LAYOUT = __doc__.split("::", 1)[1].split("\n\nWithout")[0]
ID_SEPARATOR = "__"


def subject_ids(images, root: Path) -> list[str]:
    """Each image's subject id by the module's rule; raises when two folders share an id."""
    root = Path(root)
    ids, origin_of = [], {}
    for image in map(Path, images):
        try:
            folder = image.parent.relative_to(root)
        except ValueError:
            raise ValueError(
                f"folder: {image} is not under the root {root}: give labels.csv a subject column"
            ) from None
        origin = image if folder == Path(".") else image.parent
        subject = image.stem if folder == Path(".") else ID_SEPARATOR.join(folder.parts)
        first = origin_of.setdefault(subject, origin)
        if first != origin:
            raise ValueError(
                f"folder: {first} and {origin} both give the subject id {subject!r}: "
                f"rename one (ids join sub-folders with {ID_SEPARATOR!r})"
            )
        ids.append(subject)
    return ids


def records(root: Path, labels: str | Path | None = "labels.csv") -> pd.DataFrame:
    root = Path(root)
    images = list_images(root)
    if not images:
        raise LayoutError("folder", f"{root}/<images> (no image files)", LAYOUT)
    label_path = (
        None
        if labels is None
        else (root / labels if not Path(labels).is_absolute() else Path(labels))
    )
    if label_path is not None and label_path.is_file():
        table = read_label_table(label_path, root, "folder")
    elif label_path is not None and labels != "labels.csv":
        raise LayoutError("folder", label_path, LAYOUT)
    else:
        table = pd.DataFrame({"image": [str(p) for p in images]})
    if "subject" not in table:
        table["subject"] = subject_ids(table["image"], root)
    table["sequence"] = table["subject"]
    table["frame"] = table.groupby("subject").cumcount()
    return finish_records(table, "folder")
