"""CUDA checks (marked `gpu`, skipped by default; run with `pytest -m gpu` on a machine with CUDA)."""

from __future__ import annotations

import pytest
import torch

from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _generator(preset: str, impl: str = "ref") -> Generator:
    torch.manual_seed(0)
    g = Generator(GENERATOR_PRESETS[preset], impl=impl).eval()
    with torch.no_grad():
        for conv in g.synthesis.convs:
            conv.noise_strength.fill_(0.2)
    return g


@pytest.mark.parametrize("preset", ["tiny", "demo"])
def test_cuda_matches_cpu(preset):
    g = _generator(preset)
    z = torch.randn(4, g.cfg.z_dim)
    deltas = {k: 0.1 * torch.randn(4, *s) for k, s in g.layer_shapes().items()}
    torch.backends.cuda.matmul.allow_tf32 = False  # compare fp32 with fp32
    torch.backends.cudnn.allow_tf32 = False
    with torch.no_grad():
        cpu = g(z, weight_deltas=deltas)
        gpu = g.cuda()(z.cuda(), weight_deltas={k: v.cuda() for k, v in deltas.items()}).cpu()
    assert (cpu - gpu).abs().max() < 1e-3


def test_compiled_impl_matches_reference():
    ref = _generator("demo").cuda()
    fast = _generator("demo", impl="compile").cuda()
    z = torch.randn(8, ref.cfg.z_dim, device="cuda")
    with torch.no_grad():
        assert (ref(z) - fast(z)).abs().max() < 1e-3
