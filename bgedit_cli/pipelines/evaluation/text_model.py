"""The text section's inputs: the text model under test, the edit settings it is scored at, and the small
pieces that choose what to edit (held-out wordings, the shuffled control's derangement, scenes without sea)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Sequence

import torch

from bgedit_cli.bundle import BUNDLE_FILES
from bgedit_cli.data.ade20k_classes import CLASS_NAMES
from bgedit_cli.data.captions import METADATA, read_captions
from bgedit_cli.errors import one_line
from bgedit_cli.pipelines.evaluation.scoring import sha256
from bgedit_cli.pipelines.models import Models, TextModel, load_text_model
from bgedit_cli.weights import MissingWeightsError

# Held-out wordings per style, best first: words of the captions' style phrases (`data.synth.STYLE_PHRASES`,
# so a CLIP trained on the captions has seen them) that are not the style's name. The first one that is not a
# trained prompt is scored (tests/test_evaluate_text.py checks that each occurs in its own style's phrases only).
UNSEEN_WORDINGS: dict[str, tuple[str, ...]] = {
    "day": ("sunny", "daylight", "bright"),
    "sunset": ("dusk", "evening", "golden hour"),
    "night": ("moonlit", "dark", "under the stars"),
    "snow": ("winter", "wintry", "snow-covered"),
    "fog": ("misty", "hazy", "mist"),
    "autumn": ("fall colors", "autumnal", "fall"),
}
OCEAN_PROMPT = "ocean"
OCEAN_SCENES = 64  # validation scenes without sea edited with "ocean" (the first, by name)
NO_SEA = ("none", "lake", "pond", "river")  # metadata content "water" values without sea
WATER_NAMES = ("water", "sea", "river")  # ADE20K classes counted as water
WATER_CLASSES = tuple(CLASS_NAMES.index(name) for name in WATER_NAMES)  # ADE20K ids 22, 27, 61
TARGETS = {"layout_miou": 0.7, "ocean_rise": 0.8, "unseen_ratio": 0.8}
COMBINED_NOTE = ("not measured: the renderer has no ground truth for combined looks (e.g. \"snowy night\"); "
                 "only single style names are scored against ground truth")


def open_text_model(bundle: Path, m: Models, clip: Path | None, text: Path | None
                    ) -> tuple[TextModel | None, str | None]:
    """The text model (`text`, else `BUNDLE/text.safetensors`) with the CLIP it was trained with (the bundle's
    clip.safetensors, else `clip`), both checked, or why there is none. A `text` file that does not exist is an
    InputError."""
    path = Path(bundle) / BUNDLE_FILES["text"]
    if text is None and not path.is_file():
        return None, f"no {path} (train one with `bgedit train text`)"
    clip_file = None if (Path(bundle) / BUNDLE_FILES["clip"]).is_file() else clip
    try:
        return load_text_model(m, text=text, clip=clip_file), None
    except MissingWeightsError as exc:
        return None, f"the text model's CLIP is missing: {one_line(exc)}"


def text_alphas(editor) -> dict[str, float | None]:
    """Edit settings to score: the model's own alpha and, with a Text Encoder, alpha = 1 (the mapper alone)."""
    if editor.text_encoder is None:
        return {"mapper (no Text Encoder)": None}
    return {f"mapper + Text Encoder (alpha {editor.cfg.alpha:g})": None, "mapper only (alpha 1)": 1.0}


def model_info(text: TextModel) -> dict[str, Any]:
    """What tells two text models apart in a comparison."""
    cfg = text.editor.cfg
    return {"file": str(text.path), "sha256": sha256(str(text.path)), "text_encoder": text.editor.text_encoder
            is not None, "condition": cfg.mapper.condition, "alpha": cfg.alpha, "strength": cfg.strength,
            "prompts": list(cfg.prompts), "preset": cfg.preset}


def unseen_wordings(styles: Sequence[str], prompts: Sequence[str]) -> dict[str, str]:
    """{style: its first UNSEEN_WORDINGS candidate that is not a trained prompt} for each of `styles` that has
    one (prompts compared lower-cased, stripped)."""
    trained = {p.strip().lower() for p in prompts}
    out = {}
    for style in styles:
        free = [w for w in UNSEEN_WORDINGS.get(style, ()) if w.lower() not in trained]
        if free:
            out[style] = free[0]
    return out


def derangement(n: int, seed: int) -> list[int]:
    """A seeded random cyclic permutation of range(n) (Sattolo's algorithm): perm[i] != i for every i (n >= 2)."""
    if n < 2:
        raise ValueError(f"a derangement needs 2 or more items, got {n}")
    rng = random.Random(seed)
    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        j = rng.randrange(i)  # j < i: one cycle through all items
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def water_fraction(maps: torch.Tensor, classes: Sequence[int] = WATER_CLASSES) -> torch.Tensor:
    """Class-id maps [N, H, W] -> float64 [N]: the share of each map's pixels in `classes`."""
    hit = torch.isin(maps, torch.tensor(list(classes), dtype=maps.dtype, device=maps.device))
    return hit.flatten(1).double().mean(1)


def scene_metadata(root: Path) -> tuple[dict[str, dict[str, Any]], str | None]:
    """{scene: its metadata.jsonl record} (synthetic data: content, style) and the file's path (None: absent)."""
    for folder in (Path(root), Path(root).parent):
        if (folder / METADATA).is_file():
            return read_captions(folder), str(folder / METADATA)
    return {}, None
