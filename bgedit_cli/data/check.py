"""`bgedit data check DIR`: is a folder a usable ADE20K-layout dataset (the real ADEChallengeData2016, or what
`bgedit data synth` writes)?

    ROOT/images/{training,validation}/<stem>.jpg|.png|.webp
    ROOT/annotations/{training,validation}/<stem>.png      class ids 0..150, 255 = ignore

ROOT may also be the folder holding `ADEChallengeData2016/`. For each split it reports images without a map, maps
without an image, unreadable files (every file is decoded: JPEGs at 1/8 scale, which still reads all their data),
maps whose size differs from their image's, and class ids outside 0..150/255 (or, for RGB maps, colours outside
the ADE20K palette). The counts are whatever is there; `expected` (the release's 20,210 / 2,000, used by `data
fetch ade20k`) adds a count check.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from bgedit_cli.data.ade20k_classes import IGNORE_ID, NUM_CLASSES
from bgedit_cli.errors import InputError
from bgedit_cli.io import IMAGE_SUFFIXES, load_seg

SPLITS = ("training", "validation")
LISTED = 10  # names listed per kind of problem (the counts are complete)


@dataclasses.dataclass
class SplitReport:
    """One split: counts, and the files with each kind of problem (`unreadable`: name -> reason; `unknown_ids`:
    class id -> number of maps holding it, -1 standing for colours outside the ADE20K palette)."""

    images: int = 0
    maps: int = 0
    images_without_maps: list[str] = dataclasses.field(default_factory=list)
    maps_without_images: list[str] = dataclasses.field(default_factory=list)
    unreadable: dict[str, str] = dataclasses.field(default_factory=dict)
    size_mismatch: list[str] = dataclasses.field(default_factory=list)
    unknown_ids: dict[int, int] = dataclasses.field(default_factory=dict)
    maps_with_unknown_ids: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class CheckReport:
    root: Path
    splits: dict[str, SplitReport]
    expected: dict[str, int] | None = None

    def problems(self) -> list[str]:
        """One short phrase per problem found; empty when the folder is fine."""
        out = []
        for split, r in self.splits.items():
            for count, what in ((len(r.images_without_maps), "image(s) without a map"),
                                (len(r.maps_without_images), "map(s) without an image"),
                                (len(r.unreadable), "unreadable file(s)"),
                                (len(r.size_mismatch), "map(s) of another size than their image"),
                                (len(r.maps_with_unknown_ids), "map(s) with unknown class ids")):
                if count:
                    out.append(f"{split}: {count} {what}")
            if self.expected is not None and r.images != self.expected.get(split, r.images):
                out.append(f"{split}: {r.images} images, the release has {self.expected[split]}")
        return out

    def to_dict(self) -> dict[str, Any]:
        splits = {}
        for split, r in self.splits.items():
            d = dataclasses.asdict(r)
            for key in ("images_without_maps", "maps_without_images", "size_mismatch", "maps_with_unknown_ids"):
                d[f"num_{key}"] = len(d[key])
                d[key] = d[key][:LISTED]
            d["num_unreadable"] = len(r.unreadable)
            d["unreadable"] = dict(list(r.unreadable.items())[:LISTED])
            d["unknown_ids"] = {str(k): v for k, v in sorted(r.unknown_ids.items())}
            splits[split] = d
        return {"root": str(self.root), "splits": splits, "expected": self.expected, "problems": self.problems(),
                "ok": not self.problems()}


def dataset_root(folder: Path) -> Path:
    """`folder`, or `folder/ADEChallengeData2016` when that is where the layout is; an InputError if neither."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder.")
    if not (folder / "images").is_dir() and (folder / "ADEChallengeData2016" / "images").is_dir():
        folder = folder / "ADEChallengeData2016"
    if not any((folder / "images" / s).is_dir() for s in SPLITS):
        raise InputError(f"{folder}: not an ADE20K-layout folder (expected images/training/ and/or "
                         "images/validation/ with annotations/<split>/<same name>.png).")
    return folder


def check_dataset(folder: Path, *, expected: dict[str, int] | None = None, workers: int | None = None,
                  progress: Callable[[str, int, int | None], None] | None = None) -> CheckReport:
    """Check every file of both splits (module docstring); `progress("checking <split>", done, total)`."""
    root = dataset_root(folder)
    workers = workers or min(8, os.cpu_count() or 1)
    splits = {}
    for split in SPLITS:
        images = _list(root / "images" / split, IMAGE_SUFFIXES)
        maps = _list(root / "annotations" / split, (".png",))
        report = SplitReport(images=len(images), maps=len(maps))
        report.images_without_maps = sorted(images[s].name for s in images.keys() - maps.keys())
        report.maps_without_images = sorted(maps[s].name for s in maps.keys() - images.keys())
        stems = sorted(images)
        with ThreadPoolExecutor(workers) as pool:  # PIL decodes with the GIL released
            for i, (stem, result) in enumerate(zip(stems, pool.map(lambda s: _check_pair(images[s], maps.get(s)),
                                                                    stems))):
                _add(report, stem, images[stem], maps.get(stem), result)
                if progress is not None:
                    progress(f"checking {split}", i + 1, len(stems))
            for stem in sorted(maps.keys() - images.keys()):  # still decoded: its ids and readability count
                _add(report, stem, None, maps[stem], _check_pair(None, maps[stem]))
        splits[split] = report
    return CheckReport(root, splits, expected)


def _list(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.suffix.lower() in suffixes and not p.name.startswith(".") and p.is_file()}


def _add(report: SplitReport, stem: str, image: Path | None, seg: Path | None, result: dict[str, Any]) -> None:
    for path, reason in result["unreadable"]:
        report.unreadable[path.name] = reason
    if result["size_mismatch"]:
        report.size_mismatch.append(stem)
    if result["unknown_ids"]:
        report.maps_with_unknown_ids.append(seg.name)
        for v in result["unknown_ids"]:
            report.unknown_ids[v] = report.unknown_ids.get(v, 0) + 1


def _check_pair(image: Path | None, seg: Path | None) -> dict[str, Any]:
    """Decode an image and its map: unreadable files, a size mismatch, unknown ids (-1: a colour not in the
    palette)."""
    out: dict[str, Any] = {"unreadable": [], "size_mismatch": False, "unknown_ids": []}
    image_size = None
    if image is not None:
        try:
            with Image.open(image) as img:
                image_size = img.size
                if img.format == "JPEG":
                    img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
                img.load()
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError,
                EOFError) as exc:
            out["unreadable"].append((image, _reason(exc)))
            image_size = None
    if seg is not None:
        try:
            with Image.open(seg) as img:
                img.load()
                size, ids = img.size, _map_ids(img, seg)
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError,
                EOFError) as exc:
            out["unreadable"].append((seg, _reason(exc)))
            return out
        out["size_mismatch"] = image_size is not None and size != image_size
        values = np.unique(ids)
        out["unknown_ids"] = [int(v) for v in values if (v < 0 or v >= NUM_CLASSES) and v != IGNORE_ID]
    return out


def _map_ids(img: Image.Image, path: Path) -> np.ndarray:
    """Class ids of an index map; an RGB map in the ADE20K palette is decoded as the dataset loader does
    (`io.load_seg`), an unknown colour giving id -1."""
    if img.mode in ("L", "P") or img.mode.startswith("I"):
        return np.asarray(img).astype(np.int64)
    if img.mode in ("RGB", "RGBA"):
        try:
            return load_seg(path).astype(np.int64)
        except InputError:
            return np.array([-1])
    raise ValueError(f"mode {img.mode}: a map must be an index PNG (mode L, P or I) or RGB in the ADE20K palette")


def _reason(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
