"""LPIPS-Alex v0.1 (Zhang et al. 2018) on images in [-1, 1], from local weight files only.

The network is the `lpips` package's own `LPIPS(net="alex", version="0.1")`, built with `pnet_rand=True,
pretrained=False` so that neither torchvision nor lpips loads or downloads anything; then
- the AlexNet trunk gets torchvision's ImageNet weights from `alexnet-owt-7be5be79.pth` (`features.{0,3,6,8,10}`
  -> `net.slice{1..5}.{i}`), found by `bgedit_cli.weights.find_weights(ALEXNET, override)`;
- the five linear layers get the package's shipped `lpips/weights/v0.1/alex.pth`.
Both files are read with `torch.load(weights_only=True)`. The module is frozen (eval mode, no parameter
gradients); gradients still flow to its inputs, so it serves as a loss and as a metric.

AlexNet's fifth stage needs inputs of at least 32x32 pixels (three stride-2 max-pools after a stride-4 conv).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from bgedit_cli.errors import CheckpointError, InputError
from bgedit_cli.nn.ops import assert_shape
from bgedit_cli.weights import ALEXNET, find_weights, load_torch_file, lpips_linear_layers_file

MIN_SIZE = 32
_TRUNK = {0: "slice1", 3: "slice2", 6: "slice3", 8: "slice4", 10: "slice5"}  # torchvision features.i -> lpips slice


class LPIPS(nn.Module):
    """`LPIPS(alexnet_path)(x, y)` -> per-image distances [N] for x, y: [N, 3, H, W] in [-1, 1]."""

    def __init__(self, alexnet_path: str | Path, linear_path: str | Path | None = None) -> None:
        super().__init__()
        import lpips  # here, not at the top: it imports torchvision (~2 s), needed only with the LPIPS term

        with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=False`
            warnings.simplefilter("ignore")
            self.net = lpips.LPIPS(pretrained=False, net="alex", version="0.1", pnet_rand=True, verbose=False)

        # AlexNet trunk from torchvision's file.
        trunk = load_torch_file(Path(alexnet_path), "torchvision AlexNet")
        if not isinstance(trunk, dict):
            raise CheckpointError(f"{alexnet_path}: expected a state dict (torchvision's alexnet-owt-7be5be79.pth).")
        own = {}
        for i, slice_name in _TRUNK.items():
            for p in ("weight", "bias"):
                key = f"features.{i}.{p}"
                target = getattr(getattr(self.net.net, slice_name), str(i))  # named by features index
                want = getattr(target, p).shape
                if key not in trunk or not isinstance(trunk[key], torch.Tensor) or trunk[key].shape != want:
                    raise CheckpointError(f"{alexnet_path}: not torchvision's AlexNet state dict ({key} "
                                          f"{'missing' if key not in trunk else 'has the wrong shape'}, expected "
                                          f"{list(want)}).")
                own[f"net.{slice_name}.{i}.{p}"] = trunk[key]

        # Linear layers shipped with the lpips package.
        linear_path = Path(linear_path) if linear_path is not None else lpips_linear_layers_file("alex", "0.1")
        lins = load_torch_file(linear_path, "LPIPS linear-layer")
        for k in range(5):
            key = f"lin{k}.model.1.weight"
            if not isinstance(lins, dict) or key not in lins:
                raise CheckpointError(f"{linear_path}: not the LPIPS v0.1 alex linear layers ({key} missing).")
            own[key] = lins[key]
        missing = set(self.net.load_state_dict(own, strict=False).missing_keys)
        expected_missing = {k for k in self.net.state_dict() if k.startswith(("scaling_layer.", "lins."))}
        assert missing <= expected_missing, sorted(missing - expected_missing)

        self.alexnet_path, self.linear_path = Path(alexnet_path), linear_path
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "LPIPS":
        return super().train(False)  # always eval: the linear layers carry dropout

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        assert_shape(x, [None, 3, None, None], "x")
        assert_shape(y, list(x.shape), "y")
        if min(x.shape[-2:]) < MIN_SIZE:
            raise InputError(f"LPIPS-Alex needs images of at least {MIN_SIZE}x{MIN_SIZE} pixels, got "
                             f"{x.shape[-1]}x{x.shape[-2]}.")
        return self.net(x.float(), y.float()).flatten()


def build_lpips(alexnet: str | Path | None = None, device: str | torch.device = "cpu", *,
                purpose: str | None = None) -> LPIPS:
    """LPIPS-Alex with the AlexNet file from `alexnet` or the standard places (MissingWeightsError naming
    `purpose` if absent)."""
    return LPIPS(find_weights(ALEXNET, alexnet, purpose=purpose)).to(device)
