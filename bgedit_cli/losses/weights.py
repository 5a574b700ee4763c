"""Where the auxiliary pretrained weights of the losses and metrics come from, and how they are read.

Each file is the one its publisher distributes, never a converted copy:

- `alexnet-owt-7be5be79.pth`: torchvision's ImageNet AlexNet (a state dict), the LPIPS backbone. Looked up in
  `$BGEDIT_HOME/weights/`, then in the torch hub cache (`torch.hub.get_dir()/checkpoints/`, where torchvision
  itself keeps it), or given with `--alexnet FILE`.
- the LPIPS linear layers `lpips/weights/v0.1/alex.pth`, shipped inside the `lpips` pip package.
- `moco_v2_800ep_pretrain.pth.tar` (facebookresearch/moco's release; HyperStyle renames it
  `moco_v2_800ep_pretrain.pt`): `{"state_dict": {"module.encoder_q.<resnet50 key>": ...}, ...}`. Looked up in
  `$BGEDIT_HOME/weights/` under either name, or given with `--moco FILE`.

Nothing here downloads: a missing file is a `MissingWeightsError` naming the file, its source and where to put
it. Torch files are read with `torch.load(weights_only=True)` (no pickled code runs).
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import torch

from bgedit_cli.bundle import weights_dir
from bgedit_cli.errors import CheckpointError


class MissingWeightsError(CheckpointError):
    """An auxiliary pretrained weight file is not on this machine."""


@dataclasses.dataclass(frozen=True)
class AuxWeights:
    """One auxiliary weight file: accepted names, what it is for, where it comes from, the option that gives it."""

    key: str
    names: tuple[str, ...]
    what: str
    source: str
    option: str
    torch_hub: bool = False  # also look in torch.hub.get_dir()/checkpoints/


ALEXNET = AuxWeights(
    key="alexnet",
    names=("alexnet-owt-7be5be79.pth",),
    what="LPIPS backbone (torchvision's ImageNet AlexNet)",
    source="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    option="--alexnet",
    torch_hub=True,
)
MOCO = AuxWeights(
    key="moco",
    names=("moco_v2_800ep_pretrain.pth.tar", "moco_v2_800ep_pretrain.pt"),
    what="MoCo v2 ResNet-50 (the MoCo similarity loss)",
    source=("https://dl.fbaipublicfiles.com/moco/moco_checkpoints/moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar "
            "(the MoCo v2 800-epoch model of github.com/facebookresearch/moco)"),
    option="--moco",
)


def search_dirs(spec: AuxWeights) -> list[Path]:
    """The folders searched for `spec`, in order."""
    dirs = [weights_dir()]
    if spec.torch_hub:
        dirs.append(Path(torch.hub.get_dir()) / "checkpoints")
    return dirs


def find_weights(spec: AuxWeights, override: str | Path | None = None) -> Path:
    """The file for `spec`: `override` when given (must exist), else the first name found in `search_dirs`."""
    if override is not None:
        path = Path(override).expanduser()
        if not path.is_file():
            raise MissingWeightsError(f"{spec.option} {path}: no such file ({spec.what}; get "
                                      f"{spec.names[0]} from {spec.source}).")
        return path
    dirs = search_dirs(spec)
    for folder in dirs:
        for name in spec.names:
            if (folder / name).is_file():
                return folder / name
    raise MissingWeightsError(
        f"{spec.names[0]} not found: the {spec.what} is needed. Download it from {spec.source} and put it in "
        f"{dirs[0]}/ (searched: {', '.join(str(d) for d in dirs)}), or pass {spec.option} FILE. "
        "Presets tiny and demo train without it.")


def load_torch_file(path: Path, what: str) -> Any:
    """`torch.load(path, weights_only=True)` on CPU; any failure is a CheckpointError naming the file."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"{path}: not a readable {what} file ({detail}). Re-download it.") from None


def lpips_linear_layers_file(net: str = "alex", version: str = "0.1") -> Path:
    """The LPIPS linear-layer weights shipped inside the `lpips` package."""
    try:
        import lpips  # here, not at the top: it imports torchvision (~2 s); only to find its folder
    except ImportError:
        raise MissingWeightsError("the `lpips` package is not installed (its linear layers are needed for LPIPS); "
                                  "pip install 'lpips>=0.1.4'.") from None
    path = Path(lpips.__file__).resolve().parent / "weights" / f"v{version}" / f"{net}.pth"
    if not path.is_file():
        raise MissingWeightsError(f"{path}: the LPIPS linear layers are missing from the `lpips` package; reinstall "
                                  "it (pip install --force-reinstall 'lpips>=0.1.4').")
    return path
