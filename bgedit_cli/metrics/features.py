"""Features for the distribution metrics: uint8 images [N, 3, H, W] -> features [N, D] (the first layer of
features -> statistics -> metric; see `distribution`).

- Inception-v3 (FID, KID): torch-fidelity's `FeatureExtractorInceptionV3` itself, loaded from the publisher's
  file `weights-inception-2015-12-05-6726825d.pth` (TensorFlow's 2015-12-05 graph, the network behind every
  published FID), found in `$BGEDIT_HOME/weights/`, then the torch hub cache (`torch.hub.get_dir()/checkpoints/`,
  where torch-fidelity keeps its download), or given explicitly. Inside, images are resized to 299x299 with
  TensorFlow-1.x-compatible bilinear interpolation and scaled to [-1, 1]; FID and KID read the 2048-d pool
  features (torch-fidelity's default layer for both). Nothing is downloaded: a missing file is a
  `MissingWeightsError` naming the file, its URL and where to put it.
- CLIP image tower (FD_CLIP): any CLIP module with `.encode_image(x)` and `.visual.input_resolution` (OpenAI's
  `clip.model.CLIP` or ours). Preprocessing is torch-fidelity's for its `clip-*` extractors, so FD_CLIP here equals
  `torch_fidelity.calculate_metrics(fid=True, feature_extractor="clip-vit-b-32")` on the same weights: the uint8
  image is resized (stretched, no crop) to the model's input resolution with the same bilinear filter, normalised
  with CLIP's mean/std, and the raw (not unit-normalised) image embedding is the feature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn

from bgedit_cli.errors import CheckpointError
from bgedit_cli.nn.clip_model import CLIP_MEAN, CLIP_STD
from bgedit_cli.nn.ops import assert_shape
from bgedit_cli.weights import CLIP_VIT_B32, INCEPTION, find_weights, load_torch_file

INCEPTION_LAYER = "2048"  # torch-fidelity's feature layer for FID and KID
INCEPTION_RESIZE = "bilinear (TensorFlow 1.x compatible) to 299x299"
CLIP_RESIZE = "bilinear (TensorFlow 1.x compatible) to the model's input resolution, no crop"


# ----------------------------------------------------------------------------------------------------------
# Inception-v3.


def find_inception(path: str | Path | None = None) -> Path:
    """The Inception file: `path` when given (must exist), else `$BGEDIT_HOME/weights/` or the torch hub cache."""
    return find_weights(INCEPTION, path, purpose="FID and KID; without it FID and KID are unavailable (no other "
                                                 "network can stand in)")


def build_inception(weights: str | Path | None = None, *, feature_layer: str = INCEPTION_LAYER,
                    device: str | torch.device = "cpu") -> nn.Module:
    """torch-fidelity's Inception-v3 returning `(features,)` of `feature_layer` for uint8 images [N, 3, H, W];
    `.weights_path` is the file it was loaded from.

    The file is first read with `torch.load(weights_only=True)`, so a file holding pickled code is refused
    before torch-fidelity's own `torch.load(weights_only=False)` reads it.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path = find_inception(weights)
    state = load_torch_file(path, "torch-fidelity Inception-v3")
    if not isinstance(state, dict) or "Mixed_7c.branch_pool.conv.weight" not in state:
        raise CheckpointError(f"{path}: not torch-fidelity's Inception-v3 state dict; get "
                              f"{INCEPTION.names[0]} from {INCEPTION.source}.")
    try:
        net = FeatureExtractorInceptionV3("inception-v3-compat", [feature_layer],
                                          feature_extractor_weights_path=str(path))
    except RuntimeError as exc:  # load_state_dict: missing/unexpected keys, wrong shapes
        detail = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"{path}: does not fit torch-fidelity's Inception-v3 ({detail}); get "
                              f"{INCEPTION.names[0]} from {INCEPTION.source}.") from None
    net.weights_path = path
    return net.to(device)


def inception_features(images: torch.Tensor | Iterable[torch.Tensor], net: nn.Module, *, batch_size: int = 64,
                       progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Inception features [N, D] float32 (D = 2048 at the FID/KID layer) of uint8 images [N, 3, H, W] (one tensor,
    split into batches, or an iterable of such batches); `net` from `build_inception`."""
    return batched_features(lambda x: net(x)[0], images, device=_device_of(net), batch_size=batch_size,
                            progress=progress)


# ----------------------------------------------------------------------------------------------------------
# CLIP image tower.


def openai_clip_sha256() -> str:
    """SHA-256 of OpenAI's `ViT-B-32.pt`: the path segment of its release URL (what `clip.load` checks)."""
    return CLIP_VIT_B32.published_hash


def clip_preprocess(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> float [N, 3, resolution, resolution], resized and CLIP-normalised (module doc)."""
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    x = interpolate_bilinear_2d_like_tensorflow1x(images.float(), size=(resolution, resolution),
                                                  align_corners=False)
    mean = torch.tensor(CLIP_MEAN, device=x.device).reshape(1, 3, 1, 1) * 255
    std = torch.tensor(CLIP_STD, device=x.device).reshape(1, 3, 1, 1) * 255
    return (x - mean) / std


def clip_features(images: torch.Tensor | Iterable[torch.Tensor], model: nn.Module, *, batch_size: int = 64,
                  progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """CLIP image embeddings [N, embed_dim] float32 of uint8 images [N, 3, H, W] (or an iterable of batches);
    `model` has `.encode_image` and `.visual.input_resolution` (e.g. `clip.model.CLIP`)."""
    resolution = int(model.visual.input_resolution)
    return batched_features(lambda x: model.encode_image(clip_preprocess(x, resolution)), images,
                            device=_device_of(model), batch_size=batch_size, progress=progress)


# ----------------------------------------------------------------------------------------------------------
# Shared.


def batched_features(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor | Iterable[torch.Tensor], *,
                     device: torch.device, batch_size: int = 64,
                     progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """`fn` over uint8 image batches [B, 3, H, W] on `device` without gradients: features [N, D] float32 on CPU."""
    batches = images.split(batch_size) if isinstance(images, torch.Tensor) else images
    out = []
    with torch.inference_mode():
        for batch in batches:
            assert_shape(batch, [None, 3, None, None], "images")
            if batch.dtype != torch.uint8:
                raise TypeError(f"images must be uint8 (0..255), got {batch.dtype}")
            out.append(fn(batch.to(device)).float().cpu())
            if progress is not None:
                progress(batch.shape[0])
    if not out:
        raise ValueError("no images")
    return torch.cat(out)


def _device_of(net: nn.Module) -> torch.device:
    return next(net.parameters()).device

