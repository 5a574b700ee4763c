"""CLIP for text editing: OpenAI's classes (`import clip`, the clip-anytorch package), either with OpenAI's
released weights or small and trained here on captioned scenes.

    model = ClipModel(clip_config("demo"))                   # a real clip.model.CLIP (ViT image tower)
    loss = contrastive_loss(model, img, tokenize(captions, model.context_length))
    save_network(path, model, kind="clip"); load_network(path, "clip")   # BUNDLE/clip.safetensors
    enc = ClipEncoder(model)            # or load_openai_clip() for $BGEDIT_HOME/weights/clip/ViT-B-32.pt
    t = enc.encode_text(["a lake at night"])                 # [N, D], unit norm
    f = enc.encode_image(img)                                # img [N, 3, H, W] in [-1, 1] -> [N, D], unit norm

`ClipModel(cfg)` is `clip.model.CLIP` built from a `ClipConfig` (its constructor arguments), so OpenAI's code
paths (tokenizer, encoders, `build_model`/`clip.load` on a saved state dict) apply unchanged. OpenAI's
constructor derives the vision heads as `vision_width // 64`, and `build_model` derives the text heads as
`transformer_width // 64`; the presets keep both rules, so `torch.save(model.state_dict())` of a preset model is
also a valid `clip.load` file. The vocabulary is the real BPE one (49408 tokens, shipped inside the package, so
tokenizing works offline); a small model may use a short `context_length` (32 covers every synthetic caption).

Image preprocessing is differentiable (`preprocess`): [-1, 1] -> [0, 1], centre crop to a square, resize to
the model's input resolution (bicubic, antialiased when shrinking), then CLIP's mean/std normalisation --
the tensor version of `clip.load`'s PIL transform, so CLIP losses can back-propagate into the generator.
"""

from __future__ import annotations

import dataclasses
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bgedit_cli.checkpoint import file_sha256, load_network
from bgedit_cli.config import Config
from bgedit_cli.errors import CheckpointError, ConfigError, InputError
from bgedit_cli.nn.ops import assert_shape
from bgedit_cli.weights import CLIP_VIT_B32, find_weights


def import_clip():
    """`import clip`, without the pkg_resources deprecation warning it prints on import."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pkg_resources.*")
        import clip
    return clip


_CLIP = import_clip()

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VOCAB_SIZE = 49408  # OpenAI's BPE vocabulary (the tokenizer's ids go up to 49407)
HEAD_WIDTH = 64  # OpenAI's rule: heads = width // 64

# ----------------------------------------------------------------------------------------------------------
# Config and presets.


@dataclasses.dataclass(frozen=True)
class ClipConfig(Config):
    """`clip.model.CLIP`'s constructor arguments (ViT image tower: `vision_layers` is an int)."""

    embed_dim: int
    image_resolution: int
    vision_layers: int
    vision_width: int
    vision_patch_size: int
    context_length: int
    vocab_size: int
    transformer_width: int
    transformer_heads: int
    transformer_layers: int

    def __post_init__(self) -> None:
        if min(dataclasses.astuple(self)) < 1:
            raise ConfigError("every ClipConfig value must be a positive integer.")
        if self.vision_width % HEAD_WIDTH:
            raise ConfigError(f"vision_width must be a multiple of {HEAD_WIDTH} (CLIP uses width // 64 heads), "
                              f"got {self.vision_width}.")
        if self.transformer_width % self.transformer_heads:
            raise ConfigError("transformer_width must be divisible by transformer_heads.")
        if self.image_resolution % self.vision_patch_size:
            raise ConfigError("image_resolution must be a multiple of vision_patch_size.")
        if self.vocab_size < VOCAB_SIZE:
            raise ConfigError(f"vocab_size must hold the BPE tokenizer's {VOCAB_SIZE} tokens.")
        if self.context_length < 3:
            raise ConfigError("context_length must be at least 3 (start, one token, end).")


CLIP_PRESETS: dict[str, dict[str, int]] = {
    # Seconds on CPU (tests): 16 patches of 8x8 px.
    "tiny": dict(embed_dim=32, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=8,
                 context_length=32, transformer_width=64, transformer_heads=1, transformer_layers=2),
    # The demo generator's 64 px images, 64 patches of 8x8 px; most parameters are the token embeddings.
    "demo": dict(embed_dim=128, image_resolution=64, vision_layers=4, vision_width=128, vision_patch_size=8,
                 context_length=32, transformer_width=128, transformer_heads=2, transformer_layers=4),
    # OpenAI's ViT-B/32 (the paper's CLIP), for completeness; its weights come from load_openai_clip.
    "vit-b-32": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=32,
                     context_length=77, transformer_width=512, transformer_heads=8, transformer_layers=12),
}


def clip_config(preset: str, **overrides: Any) -> ClipConfig:
    if preset not in CLIP_PRESETS:
        raise ConfigError(f"unknown CLIP preset {preset!r}; choose one of {', '.join(CLIP_PRESETS)}.")
    return ClipConfig(**{"vocab_size": VOCAB_SIZE, **CLIP_PRESETS[preset], **overrides})


class ClipModel(_CLIP.model.CLIP):
    """`clip.model.CLIP` built from a `ClipConfig` (the checkpoint kind `clip`); same state-dict keys."""

    def __init__(self, cfg: ClipConfig) -> None:
        super().__init__(**cfg.to_dict())
        self.cfg = cfg


# ----------------------------------------------------------------------------------------------------------
# Tokens and images.


def tokenize(texts: Sequence[str], context_length: int, *, truncate: bool = False) -> torch.Tensor:
    """BPE token ids [N, context_length] (OpenAI's tokenizer). A text too long for the context is an InputError
    unless `truncate` (then it is cut and ends with the end token)."""
    if isinstance(texts, str):
        texts = [texts]
    try:
        return _CLIP.tokenize(list(texts), context_length=context_length, truncate=truncate)
    except RuntimeError:
        longest = max(texts, key=len)
        raise InputError(f"prompt {longest!r} is too long for this CLIP ({context_length - 2} tokens at most); "
                         "shorten it.") from None


def preprocess(img: torch.Tensor, resolution: int) -> torch.Tensor:
    """Differentiable CLIP preprocessing: img [N, 3, H, W] in [-1, 1] -> [N, 3, resolution, resolution], centre
    cropped to a square, resized (bicubic, antialiased when shrinking) and normalised with CLIP's mean/std."""
    assert_shape(img, [None, 3, None, None], "img")
    h, w = img.shape[2:]
    if h != w:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        img = img[:, :, top:top + s, left:left + s]
    x = (img.float() + 1) * 0.5
    if x.shape[-1] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bicubic", align_corners=False,
                          antialias=x.shape[-1] > resolution)
    mean = torch.tensor(CLIP_MEAN, device=x.device).reshape(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).reshape(1, 3, 1, 1)
    return (x - mean) / std


# ----------------------------------------------------------------------------------------------------------
# Training.


def contrastive_loss(model: nn.Module, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of a CLIP on a batch of pairs: images [N, 3, H, W] in [-1, 1], tokens [N, ctx].

    Logits are `exp(logit_scale) * cos` (the scale clamped at 100, as in CLIP's training). Items with identical
    texts are all positives for each other (soft targets spread over them), so repeated captions -- common in
    synthetic data -- are not pushed apart; with distinct texts this is CLIP's loss exactly.
    """
    assert_shape(tokens, [images.shape[0], None], "tokens")
    img_f = F.normalize(model.encode_image(preprocess(images, model.visual.input_resolution)).float(), dim=-1)
    txt_f = F.normalize(model.encode_text(tokens).float(), dim=-1)
    logits = model.logit_scale.exp().clamp(max=100) * img_f @ txt_f.t()  # (N images, N texts)
    same = (tokens[:, None, :] == tokens[None, :, :]).all(dim=-1).float()
    targets = same / same.sum(dim=1, keepdim=True)  # symmetric, so it serves both directions
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))


# ----------------------------------------------------------------------------------------------------------
# Inference wrapper.


class ClipEncoder(nn.Module):
    """A frozen CLIP (ours or OpenAI's) with unit-norm `encode_text(list[str])` and differentiable
    `encode_image(img in [-1, 1])`, both -> [N, embed_dim] float32. `name` and `sha256` say which file it is."""

    def __init__(self, model: nn.Module, *, name: str = "", sha256: str = "") -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.name = name
        self.sha256 = sha256

    def train(self, mode: bool = True) -> "ClipEncoder":
        return super().train(False)  # always frozen

    @property
    def resolution(self) -> int:
        return int(self.model.visual.input_resolution)

    @property
    def context_length(self) -> int:
        return int(self.model.context_length)

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[1])

    @property
    def device(self) -> torch.device:
        return self.model.text_projection.device

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = tokenize(texts, self.context_length).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    def encode_image(self, img: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_image(preprocess(img, self.resolution)).float(), dim=-1)


def load_openai_clip(path: str | Path | None = None, device: str | torch.device = "cpu") -> ClipEncoder:
    """OpenAI's CLIP from a local release file (`ViT-B-32.pt`: a TorchScript archive, or a plain state dict) via
    `clip.load(path, device, jit=False)`. `path` defaults to `$BGEDIT_HOME/weights/clip/ViT-B-32.pt`; a missing
    file is a MissingWeightsError naming the file, its URL and where to put it. Nothing is downloaded."""
    path = find_weights(CLIP_VIT_B32, path)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.*", category=FutureWarning)
            model, _ = _CLIP.load(str(path), device=device, jit=False)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError,
            AttributeError, IndexError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"{path}: not a readable OpenAI CLIP file ({detail}). Re-download it from "
                              f"{CLIP_VIT_B32.source}.") from None
    return ClipEncoder(model, name=Path(path).name, sha256=file_sha256(path))


def load_clip_encoder(path: str | Path | None = None, device: str | torch.device = "cpu") -> ClipEncoder:
    """A `ClipEncoder` from our `clip.safetensors` (kind `clip`) or, for any other file or None, OpenAI's CLIP
    (`load_openai_clip`)."""
    if path is not None and str(path).endswith(".safetensors"):
        model = load_network(Path(path), "clip", device=device)
        return ClipEncoder(model, name=Path(path).name, sha256=file_sha256(Path(path)))
    return load_openai_clip(path, device)
