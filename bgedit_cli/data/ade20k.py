"""ADE20K SceneParsing layout as a torch Dataset (also what `bgedit data synth` writes).

    ROOT/images/{training,validation}/<stem>.jpg|.png|.webp
    ROOT/annotations/{training,validation}/<stem>.png      class ids 0..150 (0 = other), 255 = ignore

ROOT may also be the folder that holds `ADEChallengeData2016/`. Images are resized and centre-cropped to
R x R (antialiased bicubic), maps the same way with nearest neighbour (`bgedit_cli.io.resize_center_crop`).
Horizontal flips (flip=True) hit image and map together and are a pure function of (seed, epoch, index), so
runs are reproducible and resumable whatever the number of DataLoader workers: call `set_loader_epoch(loader, e)`
(or `dataset.set_epoch(e)`) before each epoch; `make_loader` starts fresh workers every epoch, so they see it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from bgedit_cli.errors import InputError
from bgedit_cli.io import IMAGE_SUFFIXES, image_to_tensor, load_seg, one_hot_seg, open_image, resize_center_crop

SPLITS = ("training", "validation")
LAYOUT = "ROOT/images/{training,validation}/*.jpg|png with ROOT/annotations/{training,validation}/<same name>.png"


def _find_root(root: Path) -> Path:
    if not (root / "images").is_dir() and (root / "ADEChallengeData2016" / "images").is_dir():
        return root / "ADEChallengeData2016"
    return root


def _list_files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for p in folder.iterdir():
        if p.suffix.lower() in suffixes and p.is_file() and not p.name.startswith("."):
            if p.stem in files:
                raise InputError(f"{folder}: two files share the name {p.stem!r} ({files[p.stem].name}, {p.name}); "
                                 f"keep one.")
            files[p.stem] = p
    return files


def flip_for(seed: int, epoch: int, index: int) -> bool:
    """The horizontal flip decision for one sample: a hash of (seed, epoch, index)."""
    return bool(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0] & 1)


class ADE20KDataset(Dataset):
    """Items: {"img": float32 [3, R, R] in [-1, 1], "seg": int64 [R, R], ("seg_onehot": float32 [151, R, R]),
    "name": stem, "index": i}. With require_seg=False, images without a map come without "seg"."""

    def __init__(self, root: str | Path, split: str = "training", resolution: int = 256, flip: bool = False,
                 require_seg: bool = True, one_hot: bool = False, seed: int = 0) -> None:
        if split not in SPLITS:
            raise InputError(f"split {split!r}: expected one of {', '.join(SPLITS)}.")
        if resolution < 1:
            raise InputError(f"resolution {resolution}: must be positive.")
        if not Path(root).is_dir():
            raise InputError(f"{root}: no such folder; expected the ADE20K layout {LAYOUT}.")
        self.root = _find_root(Path(root))
        self.split, self.resolution, self.flip = split, int(resolution), flip
        self.require_seg, self.one_hot, self.seed, self.epoch = require_seg, one_hot, int(seed), 0

        # List the files once.
        img_dir, seg_dir = self.root / "images" / split, self.root / "annotations" / split
        if not img_dir.is_dir():
            raise InputError(f"{img_dir}: no such folder; expected the ADE20K layout {LAYOUT}.")
        if require_seg and not seg_dir.is_dir():
            raise InputError(f"{seg_dir}: no such folder; expected the ADE20K layout {LAYOUT} "
                             f"(or use the images alone where maps are not needed).")
        images = _list_files(img_dir, IMAGE_SUFFIXES)
        if not images:
            raise InputError(f"{img_dir}: no images (.jpg, .jpeg, .png, .webp); expected the layout {LAYOUT}.")
        segs = _list_files(seg_dir, (".png",)) if seg_dir.is_dir() else {}
        self.names = sorted(images)
        missing = [n for n in self.names if n not in segs]
        if require_seg and missing:
            listed = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise InputError(f"{seg_dir}: {len(missing)} of {len(self.names)} images have no annotation "
                             f"<name>.png: {listed}.")
        self.image_paths = [images[n] for n in self.names]
        self.seg_paths: list[Path | None] = [segs.get(n) for n in self.names]

    def __len__(self) -> int:
        return len(self.names)

    def set_epoch(self, epoch: int) -> None:
        """Choose the flips of this epoch (call before creating the epoch's iterator)."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        img_path, seg_path = self.image_paths[index], self.seg_paths[index]
        image = open_image(img_path)
        item: dict[str, Any] = {"name": self.names[index], "index": index}
        item["img"] = image_to_tensor(resize_center_crop(image, self.resolution, Image.BICUBIC))
        if seg_path is not None:
            ids = load_seg(seg_path)
            if ids.shape != (image.height, image.width):
                raise InputError(f"{seg_path}: map is {ids.shape[1]}x{ids.shape[0]} but its image {img_path.name} "
                                 f"is {image.width}x{image.height}; they must match.")
            ids = np.asarray(resize_center_crop(Image.fromarray(ids, mode="L"), self.resolution, Image.NEAREST))
            item["seg"] = torch.from_numpy(ids.astype(np.int64))
        if self.flip and flip_for(self.seed, self.epoch, index):
            item["img"] = item["img"].flip(-1)
            if "seg" in item:
                item["seg"] = item["seg"].flip(-1)
        if self.one_hot and "seg" in item:
            item["seg_onehot"] = one_hot_seg(item["seg"])
        return item


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = True, workers: int = 0, seed: int = 0,
                drop_last: bool = False, distributed: bool = False) -> DataLoader:
    """A DataLoader whose order is a function of (seed, epoch): call `set_loader_epoch(loader, e)` per epoch.

    The sampler is a DistributedSampler (one replica unless `distributed`, where torch.distributed gives the
    rank), so order and flips resume exactly from an epoch number. Workers are not persistent, so the
    dataset's epoch reaches them."""
    replicas = {} if distributed else {"num_replicas": 1, "rank": 0}
    sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last, **replicas)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=drop_last,
                      generator=torch.Generator().manual_seed(seed), pin_memory=torch.cuda.is_available(),
                      persistent_workers=False)


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Set the epoch of a `make_loader` loader's sampler and dataset (shuffle order and flips)."""
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
