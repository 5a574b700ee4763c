"""MoCo-v2 feature similarity (HyperStyle's `MocoLoss` for non-face domains), from the local MoCo release file.

Features: torchvision's ResNet-50 without its fc head, loaded from the query encoder of facebookresearch/moco's
`moco_v2_800ep_pretrain.pth.tar` (`state_dict["module.encoder_q.<key>"]`; the MoCo MLP head `encoder_q.fc.*` is
dropped). As in HyperStyle's `criteria/moco_loss.py`, an image in [-1, 1] is resized to 224x224 (nearest, the
`F.interpolate` default) and fed as is (no ImageNet normalisation), the pooled 2048-d features are L2-normalised,
and the loss per image is `1 - <f(y_hat), f(y)>` (the target's features carry no gradient).
The network is frozen (eval mode: its batch norms use the stored statistics).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bgedit_cli.errors import CheckpointError
from bgedit_cli.nn.ops import assert_shape
from bgedit_cli.weights import MOCO, find_weights, load_torch_file

PREFIX = "module.encoder_q."
INPUT_SIZE = 224


def load_moco_resnet50(path: str | Path) -> nn.Module:
    """ResNet-50 trunk (everything but fc; output [N, 2048, 1, 1]) with the MoCo query encoder's weights."""
    import torchvision  # here, not at the top: ~2 s to import, needed only with the MoCo term

    ckpt = load_torch_file(Path(path), "MoCo v2")
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a MoCo release file (expected a dict with a 'state_dict' entry).")
    trunk = {k[len(PREFIX):]: v for k, v in state.items()
             if k.startswith(PREFIX) and not k.startswith(PREFIX + "fc.")}
    net = torchvision.models.resnet50()
    own = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    missing = [k for k in own if k not in trunk]
    wrong = [k for k in own if k in trunk and tuple(trunk[k].shape) != tuple(own[k].shape)]
    if missing or wrong:
        listed = ", ".join((missing + wrong)[:3])
        raise CheckpointError(f"{path}: not a MoCo ResNet-50 (keys {PREFIX}<resnet50 key>): "
                              f"{len(missing)} missing and {len(wrong)} wrongly shaped tensor(s), e.g. {listed}.")
    net.load_state_dict({**trunk, "fc.weight": net.fc.weight, "fc.bias": net.fc.bias}, strict=True)
    return nn.Sequential(*list(net.children())[:-1])


class MocoLoss(nn.Module):
    """`MocoLoss(path)(y_hat, y)` -> per-image `1 - cos(f(y_hat), f(y))` [N]; `features(x)` -> [N, 2048]."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.net = load_moco_resnet50(path)
        self.path = Path(path)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "MocoLoss":
        return super().train(False)  # always eval: frozen batch-norm statistics

    def features(self, img: torch.Tensor) -> torch.Tensor:
        assert_shape(img, [None, 3, None, None], "img")
        x = F.interpolate(img.float(), size=(INPUT_SIZE, INPUT_SIZE))
        return F.normalize(self.net(x).flatten(1), dim=1)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        assert_shape(y, list(y_hat.shape), "y")
        with torch.no_grad():
            target = self.features(y)
        return 1 - (self.features(y_hat) * target).sum(dim=1)


def build_moco(moco: str | Path | None = None, device: str | torch.device = "cpu", *,
               purpose: str | None = None) -> MocoLoss:
    """MoCo loss with the file from `moco` or `$BGEDIT_HOME/weights/` (MissingWeightsError naming `purpose` if
    absent)."""
    return MocoLoss(find_weights(MOCO, moco, purpose=purpose)).to(device)
