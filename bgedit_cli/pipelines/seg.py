"""`bgedit seg colorize|stats`: a segmentation map drawn in the ADE20K palette, and the share of each class."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from bgedit_cli.data.ade20k_classes import CLASS_NAMES, IGNORE_ID
from bgedit_cli.fileio import check_writable
from bgedit_cli.io import colorize_seg, load_seg, save_png


@dataclasses.dataclass(frozen=True)
class ClassCount:
    id: int
    name: str
    pixels: int
    fraction: float  # of all pixels, ignore included


@dataclasses.dataclass(frozen=True)
class SegStats:
    file: Path
    width: int
    height: int
    ignore_pixels: int
    classes: list[ClassCount]  # present classes, most frequent first

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def to_dict(self) -> dict[str, Any]:
        return {"file": str(self.file), "width": self.width, "height": self.height, "pixels": self.pixels,
                "ignore_pixels": self.ignore_pixels, "ignore_fraction": self.ignore_pixels / self.pixels,
                "classes": [dataclasses.asdict(c) for c in self.classes]}


def seg_stats(src: Path) -> SegStats:
    """Pixel count of every class present in the map `src` (index or ADE20K palette PNG), most frequent first
    (ties by id)."""
    ids = load_seg(src)
    counts = np.bincount(ids.ravel(), minlength=256)
    total = int(ids.size)
    present = [i for i in np.argsort(-counts[: len(CLASS_NAMES)], kind="stable").tolist() if counts[i] > 0]
    classes = [ClassCount(i, CLASS_NAMES[i], int(counts[i]), float(counts[i] / total)) for i in present]
    return SegStats(file=Path(src), width=int(ids.shape[1]), height=int(ids.shape[0]),
                    ignore_pixels=int(counts[IGNORE_ID]), classes=classes)


def colorize_file(src: Path, out: Path, *, force: bool = False) -> None:
    """Draw the map `src` in the ADE20K palette (ignore = white) into the PNG `out`."""
    check_writable(out, force)
    save_png(out, colorize_seg(load_seg(src)), force=force)
