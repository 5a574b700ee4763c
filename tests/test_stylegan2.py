"""StyleGAN2 generator/discriminator: shapes, configs, per-sample weight deltas, noise, truncation."""

from __future__ import annotations

import pytest
import torch

from bgedit_cli.errors import ConfigError
from bgedit_cli.nn.stylegan2 import (GENERATOR_PRESETS, Discriminator, DiscriminatorConfig, Generator,
                                     GeneratorConfig, minibatch_stddev)


def tiny(**kw) -> Generator:
    torch.manual_seed(0)
    g = Generator(GENERATOR_PRESETS["tiny"].replace(**kw)).eval()
    with torch.no_grad():  # non-zero noise strengths and biases so every input matters
        for conv in g.synthesis.convs:
            conv.noise_strength.fill_(0.3)
            conv.bias.normal_(0, 0.1)
    return g


@pytest.mark.parametrize("res,channels", [(4, (8,)), (8, (16, 8)), (32, (16, 16, 8, 8))])
def test_any_resolution_and_channel_table(res, channels):
    cfg = GeneratorConfig(img_resolution=res, z_dim=8, w_dim=12, mapping_layers=3, channels=channels)
    g = Generator(cfg)
    img = g(torch.randn(2, 8))
    assert img.shape == (2, 3, res, res)
    assert cfg.num_ws == 2 * len(channels) and len(g.layer_shapes()) == cfg.num_ws - 1
    d = Discriminator(DiscriminatorConfig.matching(cfg))
    assert d(img).shape == (2, 1)


def test_paper_preset_layout():
    cfg = GENERATOR_PRESETS["paper-256"]
    assert cfg.num_ws == 14 and cfg.num_convs == 13 and cfg.w_dim == 512 and cfg.mapping_layers == 8
    assert dict(zip(cfg.resolutions, cfg.channels)) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128}
    g = Generator(cfg)
    shapes = g.layer_shapes()
    assert shapes["convs.0"] == (512, 512, 3, 3) and shapes["convs.12"] == (128, 128, 3, 3)
    assert shapes["convs.9"] == (256, 512, 3, 3)


def test_config_round_trip_and_errors():
    cfg = GENERATOR_PRESETS["demo"]
    assert GeneratorConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="unknown key"):
        GeneratorConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ConfigError, match="power of two"):
        GeneratorConfig(img_resolution=48, channels=(8, 8, 8, 8))
    with pytest.raises(ConfigError, match="one width per resolution"):
        GeneratorConfig(img_resolution=16, channels=(8, 8))


def test_w_and_wplus_agree_and_truncation():
    g = tiny()
    z = torch.randn(3, g.cfg.z_dim)
    w = g.mapping(z)
    a = g(z)
    assert torch.allclose(a, g(ws=w), atol=1e-6)
    assert torch.allclose(a, g(ws=w.unsqueeze(1).repeat(1, g.num_ws, 1)), atol=1e-6)
    g.mapping.w_avg.copy_(w.mean(0))
    t0 = g(z, truncation_psi=0.0)  # everything collapses onto w_avg
    assert torch.allclose(t0, t0[:1].expand_as(t0), atol=1e-6)
    assert torch.allclose(g(z, truncation_psi=0.5), g(ws=g.w_avg + 0.5 * (w - g.w_avg)), atol=1e-5)


def test_noise_modes():
    g = tiny()
    z = torch.randn(2, g.cfg.z_dim)
    const = g(z, noise_mode="const")
    assert torch.equal(const, g(z, noise_mode="const"))
    torch.manual_seed(1)
    r1 = g(z, noise_mode="random")
    torch.manual_seed(2)
    r2 = g(z, noise_mode="random")
    none = g(z, noise_mode="none")
    assert (r1 - r2).abs().max() > 1e-3 and (none - const).abs().max() > 1e-3
    with pytest.raises(ValueError):
        g(z, noise_mode="bogus")


@pytest.mark.parametrize("batch", [1, 4])
def test_fused_and_unfused_paths_agree(batch):
    g = tiny()
    with torch.no_grad():  # non-zero bias and noise strength, so the folded epilogue is exercised
        for conv in g.synthesis.convs:
            conv.bias.normal_()
            conv.noise_strength.fill_(0.3)
    z = torch.randn(batch, g.cfg.z_dim)
    auto = g(z)
    assert torch.allclose(g(z, fused=True), g(z, fused=False), atol=1e-5)
    assert torch.allclose(auto, g(z, fused=False), atol=1e-5)


def test_per_sample_weight_deltas_match_single_runs():
    g = tiny()
    n = 3
    z = torch.randn(n, g.cfg.z_dim)
    deltas = {name: 0.2 * torch.randn(n, *shape) for name, shape in g.layer_shapes().items() if name != "convs.1"}
    batch = g(z, weight_deltas=deltas)
    for i in range(n):
        alone = g(z[i : i + 1], weight_deltas={k: v[i : i + 1] for k, v in deltas.items()})
        assert torch.allclose(batch[i : i + 1], alone, atol=1e-5)
    # The deltas matter, and zero deltas change nothing.
    assert (batch - g(z)).abs().max() > 1e-2
    zeros = {k: torch.zeros_like(v) for k, v in deltas.items()}
    assert torch.allclose(g(z, weight_deltas=zeros), g(z), atol=1e-5)
    # A delta equals running with weight * (1 + delta) baked into the network.
    j = "convs.2"
    one = {j: deltas[j][:1]}
    baked = tiny()
    with torch.no_grad():
        baked.synthesis.convs[2].weight.mul_(1 + deltas[j][0])
    assert torch.allclose(g(z[:1], weight_deltas=one), baked(z[:1]), atol=1e-5)


@pytest.mark.parametrize("tile_bytes", [1, 40_000])
def test_cpu_tiling_of_the_batch_changes_nothing(monkeypatch, tile_bytes):
    """High-resolution blocks run on slices of the batch on CPU; results (with deltas, noise) are unchanged."""
    import bgedit_cli.nn.stylegan2 as sg

    g = tiny()
    n = 5
    z = torch.randn(n, g.cfg.z_dim)
    deltas = {name: 0.2 * torch.randn(n, *shape) for name, shape in g.layer_shapes().items()}
    whole = g(z, weight_deltas=deltas)
    whole_plain = g(z)
    monkeypatch.setattr(sg, "CPU_TILE_BYTES", tile_bytes)
    start, chunk = g.synthesis._cpu_tiling(n, torch.device("cpu"))
    assert start < len(g.synthesis.torgbs) and chunk < n  # tiling really happens
    assert torch.allclose(g(z, weight_deltas=deltas), whole, atol=1e-5)
    assert torch.allclose(g(z), whole_plain, atol=1e-5)
    z.requires_grad_(True)
    g(z).square().sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_weight_deltas_are_validated():
    g = tiny()
    z = torch.randn(2, g.cfg.z_dim)
    with pytest.raises(ValueError, match="unknown layer"):
        g(z, weight_deltas={"torgbs.0": torch.zeros(2, 3, 32, 1, 1)})
    with pytest.raises(ValueError, match="weight_delta"):
        g(z, weight_deltas={"convs.0": torch.zeros(1, 32, 32, 3, 3)})


def test_bf16_deltas_modulate_the_weights_in_fp32():
    """Under bf16 autocast the hypernetworks return bf16 deltas; the per-sample weights are still built in fp32
    (1 + a delta of 1e-3 rounded to bf16 would be exactly 1)."""
    from bgedit_cli.nn.ops import modulated_weight

    torch.manual_seed(0)
    weight, styles = torch.randn(8, 6, 3, 3), torch.randn(2, 6)
    delta = (1e-3 * torch.randn(2, 8, 6, 3, 3)).bfloat16()
    want = modulated_weight(weight, styles, delta.float(), gain=1.4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = modulated_weight(weight, styles, delta, gain=1.4)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(got, modulated_weight(weight, styles, None, gain=1.4), rtol=1e-5, atol=0)


def test_gradients_flow_through_deltas_and_ws():
    g = tiny()
    ws = g.broadcast(g.mapping(torch.randn(2, g.cfg.z_dim))).detach().requires_grad_(True)
    delta = torch.zeros(2, *g.layer_shapes()["convs.3"], requires_grad=True)
    g(ws=ws, weight_deltas={"convs.3": delta}).square().mean().backward()
    assert ws.grad.abs().sum() > 0 and delta.grad.abs().sum() > 0


def test_discriminator_and_minibatch_stddev():
    cfg = GENERATOR_PRESETS["tiny"]
    d = Discriminator(DiscriminatorConfig.matching(cfg))
    img = torch.randn(6, 3, cfg.img_resolution, cfg.img_resolution, requires_grad=True)
    out = d(img)
    assert out.shape == (6, 1)
    out.sum().backward()
    assert img.grad.abs().sum() > 0
    x = torch.randn(5, 4, 2, 2)  # 5 is not divisible by 4: the group shrinks to a divisor
    assert minibatch_stddev(x, 4).shape == (5, 5, 2, 2)
    same = torch.ones(4, 4, 2, 2)
    assert torch.allclose(minibatch_stddev(same, 4)[:, 4], torch.full((4, 2, 2), 1e-4), atol=1e-6)
