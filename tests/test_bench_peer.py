"""The bench's rosinality peer (scripts/benchmarks/peer.py): the weight export is the exact inverse of our
importer, and rosinality's own Generator holding our weights reproduces our images.

The peer tests need a checkout of github.com/rosinality/stylegan2-pytorch: set BGEDIT_PEER_ROSINALITY=DIR, or
put it at /tmp/rosinality; they skip otherwise. Nothing of it is compiled (see peer.py).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

from bgedit_cli.convert.rosinality import convert_rosinality
from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator, GeneratorConfig

REPO = Path(__file__).resolve().parents[1]
# scripts/ is not a package: load peer.py by path (it imports only bgedit_cli and torch), leaving sys.path alone.
_spec = importlib.util.spec_from_file_location("bench_peer", REPO / "scripts" / "benchmarks" / "peer.py")
P = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(P)

TOL = 1e-4  # fp32, same math in a different order; observed ~2e-5 on images of max abs ~6-9


def _checkout() -> Path | None:
    env = os.environ.get("BGEDIT_PEER_ROSINALITY")
    for cand in ([Path(env)] if env else []) + [Path("/tmp/rosinality")]:
        if (cand / "model.py").is_file() and (cand / "op" / "__init__.py").is_file():
            return cand
    return None


needs_peer = pytest.mark.skipif(_checkout() is None, reason="no rosinality/stylegan2-pytorch checkout "
                                "(set BGEDIT_PEER_ROSINALITY or put one at /tmp/rosinality)")

# The smallest generators rosinality's fixed width table can build (512 channels up to 32 px).
TINY16 = GeneratorConfig(img_resolution=16, z_dim=32, w_dim=32, mapping_layers=2, channels=(512, 512, 512))
SMALL64_CM1 = GeneratorConfig(img_resolution=64, z_dim=32, w_dim=32, mapping_layers=2,
                              channels=(512, 512, 512, 512, 256))


def _random_generator(cfg: GeneratorConfig, seed: int = 0) -> Generator:
    """Random weights with non-zero biases and noise strengths, so every tensor shows in the image."""
    torch.manual_seed(seed)
    g = Generator(cfg).eval().requires_grad_(False)
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("noise_strength") or name.endswith(".bias"):
                p.normal_(0, 0.1)
    return g


def test_export_is_inverse_of_importer(tmp_path):
    """to_rosinality_state_dict, saved as a rosinality .pt and read back by `bgedit convert`'s importer, gives
    the same config and bit-identical tensors (no rosinality checkout needed)."""
    g = _random_generator(GeneratorConfig(img_resolution=16, z_dim=16, w_dim=16, mapping_layers=2,
                                          channels=(32, 24, 16)))
    path = tmp_path / "g.pt"
    torch.save({"g_ema": P.to_rosinality_state_dict(g), "latent_avg": g.w_avg.clone()}, path)
    conv = convert_rosinality(path)
    assert conv.config == g.cfg
    ours = g.state_dict()
    assert set(conv.state_dict) == set(ours)
    for key, value in conv.state_dict.items():
        assert torch.equal(value, ours[key]), key


def test_channel_multiplier_for_presets():
    assert P.stock_channel_multiplier(GENERATOR_PRESETS["paper-256"]) == 2
    assert P.stock_channel_multiplier(SMALL64_CM1) == 1
    for name in ("tiny", "demo"):
        with pytest.raises(P.PeerError, match="stock table"):
            P.stock_channel_multiplier(GENERATOR_PRESETS[name])


def test_bad_checkout_is_a_clear_error(tmp_path):
    with pytest.raises(P.PeerError, match="missing model.py"):
        P.load_rosinality(tmp_path)
    with pytest.raises(P.PeerError, match="no such directory"):
        P.load_rosinality(tmp_path / "absent")


@needs_peer
def test_load_leaves_no_trace():
    """Nothing compiles; cpp_extension.load, sys.path and any `op`/`model` modules are as before."""
    import torch.utils.cpp_extension as cpp_extension

    before_load, before_path = cpp_extension.load, list(sys.path)
    module = P.load_rosinality(_checkout())
    assert hasattr(module, "Generator")
    assert cpp_extension.load is before_load
    assert sys.path == before_path
    assert "op" not in sys.modules and "model" not in sys.modules


@needs_peer
@pytest.mark.parametrize("cfg", [TINY16, SMALL64_CM1], ids=["16px", "64px-cm1"])  # ~1 s and ~4 s
def test_peer_reproduces_our_images(cfg):
    g = _random_generator(cfg)
    peer = P.peer_generator(_checkout(), g)
    result = P.parity(g, peer, batch=2)
    assert result["image_max_abs"] > 1  # a non-trivial image
    assert P.max_parity_diff(result) < TOL, result
    # The timing adapter runs the same forward as the const-noise parity case.
    z = torch.randn(1, cfg.z_dim)
    with torch.no_grad():
        assert (P.PeerForward(peer, cfg)(z) - g(z)).abs().max() < TOL
