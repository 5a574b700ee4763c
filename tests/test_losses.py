"""Inversion losses: auxiliary weight lookup and errors, LPIPS/MoCo loading from publisher-format files, sums.

The weight files are random networks saved the way their publishers distribute them (a torchvision AlexNet
state dict; a MoCo release dict with `module.encoder_q.` keys and an MLP head), so nothing needs the internet.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bgedit_cli.errors import CheckpointError, InputError
from bgedit_cli.losses import HYPERSTYLE_LAMBDAS, InversionLoss, LossLambdas, build_inversion_loss, multiscale_l1
from bgedit_cli.weights import ALEXNET, MOCO, MissingWeightsError, find_weights


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory) -> Path:
    """A BGEDIT_HOME/weights folder with a random AlexNet and a random MoCo v2 ResNet-50 in publisher formats."""
    import torchvision

    folder = tmp_path_factory.mktemp("bgedit_home") / "weights"
    folder.mkdir()
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), folder / ALEXNET.names[0])
    resnet = torchvision.models.resnet50()
    state = {"module.encoder_q." + k: v for k, v in resnet.state_dict().items() if not k.startswith("fc.")}
    state.update({"module.encoder_q.fc.0.weight": torch.randn(2048, 2048), "module.encoder_q.fc.0.bias": torch.zeros(2048),
                  "module.encoder_q.fc.2.weight": torch.randn(128, 2048), "module.encoder_q.fc.2.bias": torch.zeros(128),
                  "module.encoder_k.conv1.weight": torch.zeros(64, 3, 7, 7)})
    torch.save({"epoch": 800, "arch": "resnet50", "state_dict": state, "optimizer": {}}, folder / MOCO.names[0])
    return folder


@pytest.fixture
def home(weight_files, monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("BGEDIT_HOME", str(weight_files.parent))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache
    return weight_files


@pytest.fixture
def empty_home(monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("BGEDIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


def images(n: int = 2, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(n, 3, size, size, generator=g)).clamp(-1, 1)
    return x, y


# ----------------------------------------------------------------------------------------------------------
# Lookup and errors.


def test_missing_files_name_the_file_source_and_folder(empty_home):
    with pytest.raises(MissingWeightsError) as info:
        find_weights(ALEXNET)
    msg = str(info.value)
    assert "alexnet-owt-7be5be79.pth" in msg and "https://download.pytorch.org/models/" in msg
    assert str(empty_home / "home" / "weights") in msg and "--alexnet" in msg
    assert str(empty_home / "torch" / "hub" / "checkpoints") in msg
    with pytest.raises(MissingWeightsError, match=r"moco_v2_800ep_pretrain\.pth\.tar.*facebookresearch/moco.*--moco"):
        find_weights(MOCO)
    with pytest.raises(MissingWeightsError, match="--moco .*nope.pt: no such file"):
        find_weights(MOCO, empty_home / "nope.pt")
    # The whole HyperStyle loss refuses to build (nothing substituted, nothing downloaded).
    with pytest.raises(MissingWeightsError, match="alexnet-owt-7be5be79.pth"):
        build_inversion_loss(HYPERSTYLE_LAMBDAS, resolution=64)


def test_lookup_order_hub_cache_and_hyperstyle_name(weight_files, empty_home, monkeypatch):
    import shutil

    hub = empty_home / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    shutil.copy(weight_files / ALEXNET.names[0], hub / ALEXNET.names[0])
    assert find_weights(ALEXNET) == hub / ALEXNET.names[0]  # torchvision's own cache
    own = empty_home / "home" / "weights"
    own.mkdir(parents=True)
    (own / "moco_v2_800ep_pretrain.pt").symlink_to(weight_files / MOCO.names[0])  # HyperStyle's file name
    assert find_weights(MOCO) == own / "moco_v2_800ep_pretrain.pt"


def test_wrong_files_are_clear_errors(tmp_path):
    from bgedit_cli.losses.lpips import LPIPS
    from bgedit_cli.losses.moco import MocoLoss

    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="junk.pth: not a readable"):
        LPIPS(tmp_path / "junk.pth")
    torch.save({"features.0.weight": torch.zeros(3)}, tmp_path / "small.pth")
    with pytest.raises(CheckpointError, match="not torchvision's AlexNet"):
        LPIPS(tmp_path / "small.pth")
    torch.save({"state_dict": {"module.encoder_q.conv1.weight": torch.zeros(64, 3, 7, 7)}}, tmp_path / "moco.pth.tar")
    with pytest.raises(CheckpointError, match="not a MoCo ResNet-50"):
        MocoLoss(tmp_path / "moco.pth.tar")


# ----------------------------------------------------------------------------------------------------------
# Networks.


def test_lpips_matches_the_lpips_package_and_is_zero_on_identical_images(home, monkeypatch, tmp_path):
    import shutil
    import warnings

    import lpips

    from bgedit_cli.losses.lpips import build_lpips

    net = build_lpips()
    assert net.alexnet_path == home / ALEXNET.names[0]
    x, y = images()
    d = net(x, y)
    assert d.shape == (2,) and (d > 0).all()
    assert net(x, x).abs().max() < 1e-6
    # Reference: the package's own construction, with torchvision finding the same AlexNet in its hub cache.
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    shutil.copy(home / ALEXNET.names[0], hub / ALEXNET.names[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lpips.LPIPS(net="alex", version="0.1", verbose=False)
    torch.testing.assert_close(d, ref(x, y).flatten(), atol=1e-5, rtol=1e-4)
    # Gradients reach the input, not the frozen weights.
    x_var = x.clone().requires_grad_(True)
    net(x_var, y).sum().backward()
    assert x_var.grad.abs().sum() > 0 and all(p.grad is None for p in net.parameters())
    with pytest.raises(InputError, match="at least 32x32"):
        net(x[:, :, :16, :16], y[:, :, :16, :16])


def test_moco_loads_query_encoder_and_gives_one_minus_cosine(home):
    from bgedit_cli.losses.moco import build_moco

    net = build_moco()
    x, y = images(size=32)
    feats = net.features(x)
    assert feats.shape == (2, 2048)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(2))
    assert net(x, x).abs().max() < 1e-5
    loss = net(x, y)
    torch.testing.assert_close(loss, 1 - (net.features(x) * net.features(y)).sum(1))
    # The trunk holds the encoder_q weights (not encoder_k, not the MLP head).
    state = torch.load(home / MOCO.names[0], weights_only=True)["state_dict"]
    torch.testing.assert_close(net.net[0].weight, state["module.encoder_q.conv1.weight"])
    assert not net.training and not any(p.requires_grad for p in net.parameters())


def test_hyperstyle_loss_sum_and_offline_terms(home):
    loss = build_inversion_loss(HYPERSTYLE_LAMBDAS, resolution=64)
    x, y = images()
    total, terms = loss(x, y)
    assert set(terms) == {"l2", "lpips", "moco"}
    torch.testing.assert_close(total, terms["l2"] + 0.8 * terms["lpips"] + 0.5 * terms["moco"])
    torch.testing.assert_close(terms["l2"], ((x - y) ** 2).mean())
    zero, zero_terms = loss(x, x)
    assert zero.abs() < 1e-5
    described = loss.describe(64)
    assert described["lambdas"] == {"l2": 1.0, "lpips": 0.8, "moco": 0.5} and "alexnet-owt" in described["lpips"]["alexnet"]


def test_weight_free_losses(empty_home):
    lambdas = LossLambdas(l2=1.0, lpips=0.0, moco=0.0, ms_ssim=0.5, msl1=0.25)
    loss = build_inversion_loss(lambdas, resolution=16)  # no weight files needed
    x, y = images(size=16)
    total, terms = loss(x, y)
    assert set(terms) == {"l2", "ms_ssim", "msl1"} and (total > 0)
    assert loss(x, x)[0].abs() < 1e-6
    assert loss.describe(16) == {"lambdas": {"l2": 1.0, "ms_ssim": 0.5, "msl1": 0.25}, "ms_ssim_variant": "ssim"}
    # Multi-scale L1 of a constant offset c is c at every scale.
    torch.testing.assert_close(multiscale_l1(x, x + 0.1), torch.full((2,), 0.1))
    with pytest.raises(InputError, match="every loss lambda is 0"):
        LossLambdas(l2=0, lpips=0, moco=0)
    with pytest.raises(InputError, match="--ms-ssim-lambda -1"):
        LossLambdas(ms_ssim=-1)
    with pytest.raises(InputError, match="LPIPS loss needs images of at least 32"):
        build_inversion_loss(LossLambdas(), resolution=16)
    with pytest.raises(ValueError):
        InversionLoss(LossLambdas())
