"""Inversion networks and pipelines at the tiny preset: shapes against the generator, batching, latent files,
mixing identities, gradients for training."""

from __future__ import annotations

import pytest
import torch

from bgedit_cli.checkpoint import load_network, read_checkpoint, save_network
from bgedit_cli.errors import CheckpointError, InputError
from bgedit_cli.latent import load_latent, save_latent
from bgedit_cli.nn.inversion import InversionNet, build_inversion, default_seg_layers
from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator
from bgedit_cli.pipelines.invert import compose_ws, initial_codes, invert, refine_step, render
from bgedit_cli.pipelines.mix import content_mix_codes, edit_layout, mix_content, mix_style, parse_layers, \
    style_mix_codes

SHA = "ab" * 32


def one_hot(ids: torch.Tensor) -> torch.Tensor:
    from bgedit_cli.io import one_hot_seg

    return one_hot_seg(ids)


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    g = Generator(GENERATOR_PRESETS["tiny"]).eval().requires_grad_(False)
    g.mapping.w_avg.normal_()
    net = build_inversion("proposed", "tiny", g, SHA).eval()
    base = build_inversion("baseline", "tiny", g, SHA).eval()
    gen = torch.Generator().manual_seed(1)
    img = torch.rand(2, 3, 16, 16, generator=gen) * 2 - 1
    seg = one_hot(torch.randint(0, 151, (2, 16, 16), generator=gen))
    return g, net, base, img, seg


def test_seg_layers_rule():
    assert default_seg_layers(14, 256) == 8  # the paper: 4x4 .. 32x32
    assert default_seg_layers(10, 64) == 8
    assert default_seg_layers(6, 16) == 4
    assert default_seg_layers(18, 1024) == 8


def test_delta_shapes_follow_the_generator(nets):
    g, net, _, img, seg = nets
    shapes = g.layer_shapes()
    assert net.cfg.seg_layers == 4 and net.seg_layers == 4
    with torch.no_grad():
        d_img = net.hyper_img(torch.cat([img, img], 1))
        d_seg = net.hyper_seg(torch.cat([seg, img], 1))
    for d in (d_img, d_seg):
        assert list(d) == list(shapes)
        for name, shape in shapes.items():
            assert tuple(d[name].shape) == (2, *shape)
    # The shared head (widest square conv, 32x32 here) gives a delta per tap; per-layer heads repeat over taps.
    assert net.hyper_img.shared_shape == (32, 32, 3, 3)
    assert not torch.equal(d_img["convs.0"][..., 0, 0], d_img["convs.0"][..., 1, 1])
    assert torch.equal(d_img["convs.3"][..., 0, 0], d_img["convs.3"][..., 2, 1])


def test_shared_layers_in_one_product_equal_each_layer_alone(nets):
    """The codes of all shared layers go through the FactorizedDelta as one batch (in fp32 inference, W_in read in
    row blocks); each layer's delta equals HyperStyle's formula on its own code, with and without gradients."""
    from bgedit_cli.nn.hypernet import SharedHead

    _, net, _, img, _ = nets
    hyper, f = net.hyper_img, net.hyper_img.shared
    x = torch.cat([img, img.flip(-1)], 1)
    with torch.no_grad():
        deltas = hyper(x)
        feats = hyper.backbone(x)
    with_grad = hyper(x)
    shared = [name for name in hyper.layer_shapes if isinstance(hyper.heads[name.replace(".", "_")], SharedHead)]
    assert len(shared) == 3 and f.w_in.shape[0] > 16  # several codes and several row blocks
    for name in shared:
        with torch.no_grad():
            code = hyper.heads[name.replace(".", "_")](feats)
            h = (code @ f.w_in + f.b_in).view(-1, f.in_ch, f.rank)
            want = (h @ f.w_out + f.b_out).view(-1, f.in_ch, f.out_ch, 3, 3).transpose(1, 2)
        torch.testing.assert_close(deltas[name], want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(with_grad[name].detach(), want, rtol=1e-5, atol=1e-6)


def test_hypernetwork_condition_equals_the_whole_input(nets):
    """invert computes each hypernetwork's response to its fixed input (image, one-hot map) once: forward(y, cond)
    gives the deltas of forward(cat(x, y))."""
    from bgedit_cli.pipelines.invert import hyper_conditions

    _, net, _, img, seg = nets
    y = torch.rand_like(img) * 2 - 1
    with torch.no_grad():
        conds = hyper_conditions(net, img, seg)
        for hyper, x, cond in ((net.hyper_img, img, conds[0]), (net.hyper_seg, seg, conds[1])):
            whole, split = hyper(torch.cat([x, y], 1)), hyper(y, cond)
            for name in whole:
                torch.testing.assert_close(split[name], whole[name], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        net.hyper_img.condition(torch.cat([img, img], 1))


def test_refuses_another_generator(nets):
    g, net, *_ = nets
    other = Generator(GENERATOR_PRESETS["tiny"].replace(channels=(32, 16, 16)))
    with pytest.raises(CheckpointError, match=r"convs\.1 is \[16, 32, 3, 3\], expected \[32, 32, 3, 3\]"):
        net.check_generator(other)
    with pytest.raises(CheckpointError, match="another generator"):
        InversionNet(net.cfg, other.layer_shapes())
    net.check_generator(g, SHA)
    with pytest.raises(CheckpointError, match="trained for generator abab"):
        net.check_generator(g, "cd" * 32)


def test_checkpoint_round_trip(nets, tmp_path):
    g, net, base, img, seg = nets
    for n, name in ((net, "inversion"), (base, "inversion-baseline")):
        save_network(tmp_path / f"{name}.safetensors", n, kind="inversion")
        loaded = load_network(tmp_path / f"{name}.safetensors", "inversion")
        assert loaded.variant == n.variant and loaded.cfg.to_json() == n.cfg.to_json()
        a = invert(g, n, img, seg, steps=1).images
        b = invert(g, loaded, img, seg, steps=1).images
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)  # (attention fast path when frozen)
    assert base.seg_encoder is None and base.hyper_seg is None and base.seg_layers == 0
    cfg = read_checkpoint(tmp_path / "inversion.safetensors").config
    assert cfg["generator_sha256"] == SHA and cfg["layer_shapes"]["convs.4"] == [16, 16, 3, 3]


@pytest.mark.parametrize("variant", ["proposed", "baseline"])
def test_batch_equals_single(nets, variant):
    g, net, base, img, seg = nets
    n = net if variant == "proposed" else base
    both = invert(g, n, img, seg, steps=2)
    for i in range(2):
        one = invert(g, n, img[i:i + 1], seg[i:i + 1], steps=2)
        torch.testing.assert_close(one.images, both.images[i:i + 1], atol=1e-5, rtol=0)
        torch.testing.assert_close(one.ws, both.ws[i:i + 1], atol=1e-5, rtol=0)
        for k, d in both.delta_img.items():
            torch.testing.assert_close(one.delta_img[k], d[i:i + 1], atol=1e-5, rtol=0)
    assert (both.delta_seg is None) == (variant == "baseline")


def test_codes_and_refinement_steps(nets):
    g, net, base, img, seg = nets
    inv = invert(g, net, img, seg, steps=2, return_steps=True)
    k = net.seg_layers
    assert inv.ws.shape == (2, 6, 32) and inv.w.shape == (2, 32) and inv.seg_latents.shape == (2, k, 32)
    torch.testing.assert_close(inv.ws[:, :k], inv.seg_latents)
    torch.testing.assert_close(inv.ws[:, k:], inv.w[:, None].expand(-1, 6 - k, -1))
    # Steps by hand: y_0 = G(ws), then delta_t = delta_{t-1} + H(cat(x, y_{t-1})).
    with torch.no_grad():
        w, s, ws = initial_codes(g, net, img, seg)
        y = render(g, ws)
        torch.testing.assert_close(inv.steps_images[0], y)
        d_img = d_seg = None
        for t in (1, 2):
            d_img, d_seg, y = refine_step(g, net, img, seg, ws, d_img, d_seg, y)
            torch.testing.assert_close(inv.steps_images[t], y)
    torch.testing.assert_close(inv.images, y)
    assert len(inv.steps_images) == 3
    assert not torch.allclose(inv.steps_images[0], inv.images, atol=1e-4)  # the deltas change the image
    b = invert(g, base, img, seg, steps=0)
    torch.testing.assert_close(b.ws, b.w[:, None].expand(-1, 6, -1))
    assert b.seg_latents is None and b.delta_img is None


def test_refine_step_trains_and_cuts_gradients(nets):
    g, net, _, img, seg = nets
    net = build_inversion("proposed", "tiny", g, SHA)  # train mode, fresh parameters
    w, s, ws = initial_codes(g, net, img, seg)
    y0 = render(g, ws)
    d_img, d_seg, y1 = refine_step(g, net, img, seg, ws.detach(), None, None, y0)
    d_img2, d_seg2, y2 = refine_step(g, net, img, seg, ws.detach(), d_img, d_seg, y1)
    (y2 - img).square().mean().backward()
    assert net.hyper_img.heads["convs_0"].linear.weight.grad.abs().sum() > 0
    assert net.hyper_seg.backbone.stem[0].weight.grad.abs().sum() > 0
    assert net.image_encoder.z.grad is None  # ws was detached; the earlier step's graph is cut
    (render(g, ws) - img).square().mean().backward()
    assert net.image_encoder.z.grad.abs().sum() > 0 and net.seg_encoder.z.grad.abs().sum() > 0


def test_latent_round_trip(nets, tmp_path):
    g, net, _, img, seg = nets
    inv = invert(g, net, img, seg, steps=2)
    path = tmp_path / "a.latent.safetensors"
    save_latent(path, inv.select(1), {"generator_sha256": SHA, "source": "a.png", "resolution": 16, "steps": 2})
    raw = read_checkpoint(path, "latent")
    assert raw.tensors["delta_img.convs.0"].shape == (32, 32, 3, 3)  # per tap: stored whole
    assert raw.tensors["delta_img.convs.3"].shape == (16, 32, 1, 1)  # per channel pair: stored once
    assert raw.tensors["delta_seg.convs.3"].dtype == torch.float16 and raw.tensors["ws"].dtype == torch.float32
    back = load_latent(path, SHA)
    assert torch.equal(back.ws, inv.ws[1:]) and torch.equal(back.w, inv.w[1:])
    assert torch.equal(back.seg_latents, inv.seg_latents[1:])
    for part in ("delta_img", "delta_seg"):
        for k, d in getattr(inv, part).items():
            assert torch.equal(getattr(back, part)[k], d[1:].half().float())
    assert back.meta["source"] == "a.png" and back.meta["variant"] == "proposed" and back.meta["seg_layers"] == 4
    with torch.no_grad():
        again = render(g, back.ws, back.weight_deltas())
    torch.testing.assert_close(again, inv.images[1:], atol=2e-3, rtol=0)
    with pytest.raises(CheckpointError, match="made with generator abab"):
        load_latent(path, "cd" * 32)
    with pytest.raises(CheckpointError, match="'inversion' checkpoint is needed"):
        load_network(path, "inversion")


def test_mixing(nets):
    g, net, _, img, seg = nets
    inv = invert(g, net, img, seg, steps=2)
    a, b = inv.select(0), inv.select(1)
    torch.testing.assert_close(mix_style(g, a, a), a.images, atol=1e-5, rtol=0)
    torch.testing.assert_close(mix_content(g, a, a), a.images, atol=1e-5, rtol=0)
    k = net.seg_layers
    ws, d_img, d_seg = style_mix_codes(a, b)
    assert torch.equal(ws[:, :k], a.ws[:, :k]) and torch.equal(ws[:, k:], b.ws[:, k:])
    assert d_img is a.delta_img and d_seg is a.delta_seg
    ws, d_img, _ = style_mix_codes(a, b, layers=[5], take_delta_img="b")
    assert torch.equal(ws[:, :5], a.ws[:, :5]) and torch.equal(ws[:, 5], b.ws[:, 5]) and d_img is b.delta_img
    for swap, src_img, src_seg in (("seg", a, b), ("all", b, b), ("none", a, a)):
        ws, d_img, d_seg = content_mix_codes(a, b, swap_deltas=swap)
        assert torch.equal(ws[:, :k], b.ws[:, :k]) and torch.equal(ws[:, k:], a.ws[:, k:])
        assert d_img is src_img.delta_img and d_seg is src_seg.delta_seg
    # A single inversion pairs with every item of a batch.
    both = mix_style(g, a, inv)
    torch.testing.assert_close(both[0], a.images[0], atol=1e-5, rtol=0)
    with pytest.raises(InputError, match="proposed variant"):
        mix_style(g, a, invert(g, nets[2], img[:1], None, steps=0))


def test_edit_layout(nets):
    g, net, _, img, seg = nets
    a = invert(g, net, img[:1], seg[:1], steps=1)
    new = one_hot(torch.full((1, 16, 16), 3))
    out = edit_layout(g, net, a, new, steps=2)
    assert torch.equal(out.w, a.w) and out.delta_img is a.delta_img
    with torch.no_grad():
        torch.testing.assert_close(out.seg_latents, net.seg_encoder(new, g))
    torch.testing.assert_close(out.ws, compose_ws(g, a.w, out.seg_latents))
    assert out.images.shape == (1, 3, 16, 16) and not torch.allclose(out.images, a.images, atol=1e-3)


def test_parse_layers():
    assert parse_layers("8:", 14) == list(range(8, 14))
    assert parse_layers(":2", 14) == [0, 1]
    assert parse_layers("3,5,9-11", 14) == [3, 5, 9, 10, 11]
    for bad in ("14:", "x", "3-20"):
        with pytest.raises(InputError):
            parse_layers(bad, 14)
