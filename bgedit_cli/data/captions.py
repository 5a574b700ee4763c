"""Captioned images for CLIP training, and the prompts of its zero-shot evaluation.

    ROOT/images/{training,validation}/<stem>.png|jpg      (the ADE20K layout; annotations are not needed)
    ROOT/metadata.jsonl                                    one JSON object per line: {"file": <stem>, "caption": ...}

`bgedit data synth` writes both; its records also carry the scene's `content` factors and `style.name`, which
the zero-shot evaluation uses as labels (records without them are simply not scored). Images are paired with
captions by file stem; an image without a caption is an error naming it.

Zero-shot prompts come from the data's vocabulary (`ROOT/vocabulary.json`, read by
`bgedit_cli.data.synth.read_vocabulary`; `CaptionDataset.vocabulary`): a look is named by its look-only
caption wordings (`style_phrases` with the subjects "landscape" and "scene": 'a foggy landscape', 'a scene at
night'); a content factor's value by its `content_words` ('lake', 'a lake landscape'), and its absence by the
plain 'a landscape' / 'a scene'. The functions below take that vocabulary; without one they use the renderer's
current tables (`renderer_vocabulary()`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bgedit_cli.data.ade20k import ADE20KDataset, flip_for
from bgedit_cli.data.synth import METADATA, Vocabulary, read_vocabulary, renderer_vocabulary
from bgedit_cli.data.synth.captions import article
from bgedit_cli.errors import InputError
from bgedit_cli.io import open_image, resize_center_crop

CACHE_BYTES = 1 << 30  # splits up to this size (uint8 pixels) stay decoded in memory
LOOK_SUBJECTS = ("landscape", "scene")  # the subjects of synth's look-only captions
ALWAYS_PRESENT = ("ground",)  # content factors every scene has (no "none" class)


def read_captions(root: Path) -> dict[str, dict[str, Any]]:
    """`ROOT/metadata.jsonl` -> {file stem: record}; a missing file or a bad line is an InputError."""
    path = Path(root) / METADATA
    if not path.is_file():
        raise InputError(f"{path}: no such file; CLIP training pairs every image with a caption from it (one JSON "
                         'object per line with "file" and "caption", as `bgedit data synth` writes).')
    records: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            records[Path(record["file"]).stem] = record
        except (json.JSONDecodeError, KeyError, TypeError):
            raise InputError(f'{path}, line {number}: expected a JSON object with "file" and "caption".') from None
    return records


class CaptionDataset(torch.utils.data.Dataset):
    """Items: {"img": float32 [3, R, R] in [-1, 1], "caption": str, "index": i}. With `flip`, a horizontal flip
    drawn from (seed, epoch, index) as in ADE20KDataset (call `set_epoch`). `records[i]` is image i's metadata,
    `vocabulary` the data's words (zero-shot prompts and labels). Small splits are kept decoded (uint8) after
    their first use."""

    def __init__(self, root: str | Path, split: str, resolution: int, *, flip: bool = False, seed: int = 0) -> None:
        images = ADE20KDataset(root, split, resolution=resolution, require_seg=False)  # listing and layout errors
        captions = read_captions(images.root)
        for name, path in zip(images.names, images.image_paths):
            if not isinstance(captions.get(name, {}).get("caption"), str):
                raise InputError(f'{images.root / METADATA}: no caption for {path} (a line with "file": "{name}" '
                                 'and a "caption" is needed).')
        self.root, self.split, self.resolution = images.root, split, int(resolution)
        self.names, self.paths = images.names, images.image_paths
        self.records = [captions[n] for n in self.names]
        self.vocabulary = read_vocabulary(images.root)
        self.captions = [r["caption"] for r in self.records]
        self.flip, self.seed, self.epoch = flip, int(seed), 0
        self.keep = len(self.names) * 3 * self.resolution**2 <= CACHE_BYTES
        self.pixels: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.names)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pixels = self.pixels.get(index)
        if pixels is None:
            image = resize_center_crop(open_image(self.paths[index]), self.resolution, Image.BICUBIC)
            pixels = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()  # uint8
            if self.keep:
                self.pixels[index] = pixels
        img = pixels.float().div_(127.5).sub_(1.0)  # as bgedit_cli.io.image_to_tensor
        if self.flip and flip_for(self.seed, self.epoch, index):
            img = img.flip(-1)
        return {"img": img, "caption": self.captions[index], "index": index}


# ----------------------------------------------------------------------------------------------------------
# Zero-shot labels and prompts.


def _or_renderer(vocabulary: Vocabulary | None) -> Vocabulary:
    """The given vocabulary (the data's), else the renderer's current tables."""
    return vocabulary if vocabulary is not None else renderer_vocabulary()


def style_prompts(vocabulary: Vocabulary | None = None) -> dict[str, list[str]]:
    """look -> its wordings as a look-only caption: 'a sunny landscape', 'a scene on a clear day', ..."""
    words = _or_renderer(vocabulary)
    return {name: [f"{article(f'{adj} {subject}'.strip())} {when}".strip()
                   for adj, when in words.style_phrases[name] for subject in LOOK_SUBJECTS]
            for name in words.style_names}


def content_prompts(factor: str, vocabulary: Vocabulary | None = None) -> dict[str, list[str]]:
    """value -> its wordings for one content factor: each word alone and as 'a <word> landscape'; 'none' (for
    factors a scene may lack) as the plain 'a landscape' / 'a scene'."""
    words = _or_renderer(vocabulary)
    prompts = {value: [p for w in names for p in (w, article(f"{w} landscape"))]
               for value, names in words.content_words[factor].items()}
    if factor not in ALWAYS_PRESENT:
        prompts["none"] = [article(subject) for subject in LOOK_SUBJECTS]
    return prompts


def factor_value(content: dict[str, Any], factor: str, vocabulary: Vocabulary | None = None) -> str:
    """The class of a scene's content factor among `content_prompts(factor)`: the value itself (water, ground,
    buildings, forest), the word's value when present ('trees', 'road', 'rocks'; counts and flags), 'mountain'
    or 'hill' for ridges (mountain when there is one), else 'none'."""
    value = content[factor]
    if isinstance(value, str):
        return value
    if factor == "ridges":
        kinds = {ridge["kind"] for ridge in value}
        return "mountain" if "mountain" in kinds else "hill" if kinds else "none"
    (name,) = _or_renderer(vocabulary).content_words[factor]
    return name if value else "none"


def zero_shot_labels(records: list[dict[str, Any]], vocabulary: Vocabulary | None = None
                     ) -> dict[str, tuple[list[str], list[int | None]]]:
    """task ('style' or a content factor) -> (class names, each record's class index or None when the record
    does not say). Tasks that no record labels are left out."""
    words = _or_renderer(vocabulary)
    tasks = {"style": list(words.style_names)}
    tasks.update({factor: list(content_prompts(factor, words)) for factor in words.content_words})
    out = {}
    for task, classes in tasks.items():
        labels = []
        for r in records:
            if task == "style":
                value = (r.get("style") or {}).get("name")
            else:
                content = r.get("content") or {}
                value = factor_value(content, task, words) if task in content else None
            labels.append(classes.index(value) if value in classes else None)
        if any(label is not None for label in labels):
            out[task] = (classes, labels)
    return out


def task_prompts(task: str, vocabulary: Vocabulary | None = None) -> dict[str, list[str]]:
    """Class name -> prompts of a zero-shot task ('style' or a content factor)."""
    return style_prompts(vocabulary) if task == "style" else content_prompts(task, vocabulary)
