"""Text editing networks at tiny sizes: CLIP (ours and OpenAI's file format), the levels mapper, the Text Encoder,
the text model file, the CLIP losses and the text-edit pipeline."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
import torch.nn.functional as F

from bgedit_cli import checkpoint
from bgedit_cli.checkpoint import load_network, save_network
from bgedit_cli.errors import CheckpointError, ConfigError, InputError
from bgedit_cli.weights import MissingWeightsError
from bgedit_cli.nn.clip_model import (CLIP_MEAN, CLIP_STD, CLIP_VIT_B32, ClipEncoder, ClipModel, clip_config,
                                      contrastive_loss, import_clip, load_clip_encoder, load_openai_clip, preprocess,
                                      tokenize)
from bgedit_cli.nn.mapper import LevelsMapper, MapperConfig, default_levels, mapper_config
from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator
from bgedit_cli.nn.text_encoder import (TextEditor, TextEditorConfig, TextEncoder, TextEncoderConfig,
                                        build_text_editor)
from bgedit_cli.pipelines.invert import Inversion, render
from bgedit_cli.pipelines.text_edit import edit_codes, nearest_trained_prompts, text_edit

G_CFG = GENERATOR_PRESETS["tiny"]  # 16 px, num_ws 6, w_dim 32


@pytest.fixture(scope="module")
def tiny_clip() -> ClipModel:
    torch.manual_seed(0)
    return ClipModel(clip_config("tiny"))


def _toy_batch() -> tuple[torch.Tensor, list[str]]:
    """Four flat-colour images with four captions."""
    colours = torch.tensor([[1, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, 1]], dtype=torch.float32)
    img = colours[:, :, None, None].expand(4, 3, 32, 32).contiguous()
    return img, ["a red scene", "a green scene", "a blue scene", "a white scene"]


# ----------------------------------------------------------------------------------------------------------
# CLIP.


def test_tokenizer_runs_offline_and_refuses_long_prompts():
    clip = import_clip()
    tokens = tokenize(["a lake at night", "ocean"], 32)
    assert tokens.shape == (2, 32) and tokens.dtype == torch.long
    sot, eot = 49406, 49407  # the BPE vocabulary shipped inside the package
    assert tokens[1, :3].tolist() == [sot, clip.clip._tokenizer.encode("ocean")[0], eot]
    assert tokens[0, 0] == sot and tokens[0].argmax() == 5 and tokens[0, 6:].eq(0).all()
    with pytest.raises(InputError, match="too long"):
        tokenize(["word " * 40], 32)


def test_preprocess_is_clips_normalisation_and_differentiable():
    img = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_()
    x = preprocess(img, 32)
    mean, std = torch.tensor(CLIP_MEAN).reshape(1, 3, 1, 1), torch.tensor(CLIP_STD).reshape(1, 3, 1, 1)
    torch.testing.assert_close(x, ((img + 1) / 2 - mean) / std)
    wide = torch.rand(1, 3, 40, 64) * 2 - 1  # centre crop to 40x40, then shrink
    assert preprocess(wide, 32).shape == (1, 3, 32, 32)
    flat = torch.full((1, 3, 40, 64), 0.5)
    torch.testing.assert_close(preprocess(flat, 32), preprocess(torch.full((1, 3, 32, 32), 0.5), 32))
    preprocess(img, 24).sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_contrastive_loss_is_clips_loss_and_merges_repeated_texts(tiny_clip):
    img, texts = _toy_batch()
    tokens = tokenize(texts, 32)
    with torch.no_grad():
        loss = contrastive_loss(tiny_clip, img, tokens)
        i = F.normalize(tiny_clip.encode_image(preprocess(img, 32)), dim=-1)
        t = F.normalize(tiny_clip.encode_text(tokens), dim=-1)
        logits = tiny_clip.logit_scale.exp() * i @ t.t()
        labels = torch.arange(4)
        torch.testing.assert_close(loss, (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2)
        # Two items with one caption: both count as positives (soft targets), unlike plain InfoNCE.
        dup = tokenize(texts[:3] + texts[:1], 32)
        logits = tiny_clip.logit_scale.exp() * i @ F.normalize(tiny_clip.encode_text(dup), dim=-1).t()
        soft = torch.tensor([[.5, 0, 0, .5], [0, 1, 0, 0], [0, 0, 1, 0], [.5, 0, 0, .5]])
        torch.testing.assert_close(contrastive_loss(tiny_clip, img, dup),
                                   (F.cross_entropy(logits, soft) + F.cross_entropy(logits.t(), soft)) / 2)


def test_tiny_clip_trains_and_reloads_identically(tmp_path):
    torch.manual_seed(1)
    model = ClipModel(clip_config("tiny")).train()
    img, texts = _toy_batch()
    tokens = tokenize(texts, model.context_length)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = contrastive_loss(model, img, tokens)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses

    path = tmp_path / "clip.safetensors"
    save_network(path, model, kind="clip")
    again = load_network(path, "clip")
    assert isinstance(again, import_clip().model.CLIP) and again.cfg == model.cfg
    enc, enc2 = ClipEncoder(model), load_clip_encoder(path)
    assert enc2.sha256 == checkpoint.file_sha256(path) and enc2.resolution == 32 and enc2.embed_dim == 32
    with torch.no_grad():
        torch.testing.assert_close(enc2.encode_text(texts), enc.encode_text(texts), rtol=0, atol=0)
        torch.testing.assert_close(enc2.encode_image(img), enc.encode_image(img), rtol=0, atol=0)
    # After training, each image is closest to its own caption.
    sims = enc2.encode_image(img) @ enc2.encode_text(texts).t()
    assert sims.argmax(dim=1).tolist() == [0, 1, 2, 3]


def test_clip_config_is_checked():
    with pytest.raises(ConfigError, match="multiple of 64"):
        clip_config("tiny", vision_width=48)
    with pytest.raises(ConfigError, match="vocab"):
        clip_config("tiny", vocab_size=1000)
    with pytest.raises(ConfigError, match="unknown CLIP preset"):
        clip_config("huge")


@pytest.mark.parametrize("layout", ["torchscript", "state-dict"])
def test_openai_file_format_loads_with_clip_load(tmp_path, monkeypatch, tiny_clip, layout):
    """A `ViT-B-32.pt`-format file: OpenAI's releases are TorchScript archives (traced models); clip.load also
    takes a plain state dict. `build_model` infers every size from the tensor shapes."""
    monkeypatch.setenv("BGEDIT_HOME", str(tmp_path))
    path = tmp_path / "weights" / "clip" / "ViT-B-32.pt"
    path.parent.mkdir(parents=True)
    if layout == "state-dict":
        torch.save(tiny_clip.state_dict(), path)
    else:
        plain = import_clip().model.CLIP(**tiny_clip.cfg.to_dict())
        plain.load_state_dict(tiny_clip.state_dict())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(plain.eval(), (torch.zeros(1, 3, 32, 32), tokenize(["a"], 32)),
                                     check_trace=False)
            torch.jit.save(traced, str(path))
    enc = load_openai_clip()  # looked up in $BGEDIT_HOME/weights/clip/
    assert type(enc.model) is import_clip().model.CLIP
    assert (enc.resolution, enc.context_length, enc.embed_dim) == (32, 32, 32) and enc.name == "ViT-B-32.pt"
    ref = ClipEncoder(tiny_clip)
    img, texts = _toy_batch()
    with torch.no_grad():  # clip.load stores weights in fp16 and casts back on CPU
        assert (enc.encode_text(texts) * ref.encode_text(texts)).sum(1).min() > 0.999
        assert (enc.encode_image(img) * ref.encode_image(img)).sum(1).min() > 0.999
    assert load_clip_encoder(path).sha256 == enc.sha256  # an explicit non-safetensors path is OpenAI's format


def test_missing_or_damaged_openai_clip_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("BGEDIT_HOME", str(tmp_path))
    assert CLIP_VIT_B32.source == import_clip().clip._MODELS["ViT-B/32"]
    with pytest.raises(MissingWeightsError) as err:
        load_openai_clip()
    msg = str(err.value)
    assert "ViT-B-32.pt" in msg and CLIP_VIT_B32.source in msg and str(tmp_path / "weights") in msg
    with pytest.raises(MissingWeightsError, match="--clip"):
        load_openai_clip(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable OpenAI CLIP file"):
        load_openai_clip(bad)


# ----------------------------------------------------------------------------------------------------------
# Levels mapper.


def test_default_levels():
    assert default_levels(14) == (4, 8)  # StyleCLIP: coarse 0..3, medium 4..7, fine 8..13
    assert default_levels(10) == (4, 8)  # 64 px: fine = the 64x64 rows
    assert default_levels(6) == (4, 5)
    with pytest.raises(ConfigError):
        default_levels(2)
    cfg = mapper_config(10, 16, 8)
    assert [list(cfg.rows(g)) for g in ("coarse", "medium", "fine")] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert MapperConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize("condition", ["film", "film-delta"])
def test_mapper_shapes_and_zero_init_film(condition):
    torch.manual_seed(0)
    mapper = LevelsMapper(mapper_config(6, 32, 16, condition=condition))
    ws, text = torch.randn(3, 6, 32), F.normalize(torch.randn(3, 16), dim=1)
    delta = mapper(ws, text)
    assert delta.shape == (3, 6, 32) and delta.abs().max() > 0
    torch.testing.assert_close(delta, mapper(ws, None), rtol=0, atol=0)  # FiLM starts at zero: unconditioned
    # Once FiLM has weights, the prompt matters, per item.
    for group in mapper.groups.values():
        for film in group.films:
            torch.nn.init.normal_(film.weight)
    other = mapper(ws, text.flip(0))
    assert not torch.allclose(other, delta) and not torch.allclose(mapper(ws, text), delta)
    torch.testing.assert_close(mapper(ws[:1], text[2:]), other[:1])
    if condition == "film-delta":
        assert set(mapper.state_dict()) >= {"neutral_emb"}
        mapper.set_neutral(text[0])
        torch.testing.assert_close(mapper.condition(text[1:2]), F.normalize(text[1:2] - text[0], dim=1))


def test_mapper_groups_switch_rows_off():
    torch.manual_seed(0)
    ws, text = torch.randn(2, 10, 16), torch.randn(2, 8)
    full = LevelsMapper(mapper_config(10, 16, 8))
    for groups, zero_rows in ((("fine",), range(0, 8)), (("coarse", "medium"), range(8, 10)),
                              (("medium",), [0, 1, 2, 3, 8, 9])):
        m = LevelsMapper(mapper_config(10, 16, 8, groups=groups))
        m.load_state_dict({k: v for k, v in full.state_dict().items() if k.split(".")[1] in groups})
        delta, ref = m(ws, text), full(ws, text)
        on = [r for r in range(10) if r not in zero_rows]
        assert delta[:, list(zero_rows)].eq(0).all()
        torch.testing.assert_close(delta[:, on], ref[:, on])
    with pytest.raises(ConfigError, match="groups"):
        mapper_config(10, 16, 8, groups=("top",))


# ----------------------------------------------------------------------------------------------------------
# Text Encoder and the text model.


def test_text_encoder_is_reparameterised_and_seedable():
    torch.manual_seed(0)
    cfg = TextEncoderConfig(text_dim=16, num_ws=6, w_dim=32, hidden_dim=24, sigma_init=0.05)
    T = TextEncoder(cfg)
    text = torch.randn(2, 16)
    a = T(text, generator=torch.Generator().manual_seed(3))
    b = T(text, generator=torch.Generator().manual_seed(3))
    c = T(text, generator=torch.Generator().manual_seed(4))
    assert a.delta.shape == a.mu.shape == a.sigma.shape == (2, 6, 32)
    torch.testing.assert_close(a.delta, b.delta, rtol=0, atol=0)
    assert not torch.allclose(a.delta, c.delta)
    torch.testing.assert_close(a.sigma, torch.full_like(a.sigma, 0.05))  # every sigma starts at sigma_init
    eps = torch.randn(2, 6, 32)
    out = T(text, eps=eps)
    torch.testing.assert_close(out.delta, out.mu + out.sigma * eps)
    torch.testing.assert_close(T(text, eps=torch.zeros(2, 6, 32)).delta, out.mu)
    out.delta.sum().backward()  # gradients reach both heads
    assert T.mu.weight.grad.abs().sum() > 0 and T.sigma.weight.grad.abs().sum() > 0


def test_text_editor_edit_formula_and_file(tmp_path):
    torch.manual_seed(0)
    editor = build_text_editor(G_CFG, 16, "tiny", prompts=["ocean", "night"], clip_sha256="ab" * 32)
    ws, text = torch.randn(2, 6, 32), torch.randn(2, 16)
    eps = torch.randn(2, 6, 32)
    delta1, t = editor.deltas(ws, text, eps=eps)
    torch.testing.assert_close(editor.edit(ws, text, alpha=0.3, strength=2.0, eps=eps),
                               ws + 2.0 * (0.3 * delta1 + 0.7 * t.delta))
    torch.testing.assert_close(editor.edit(ws, text, eps=eps), ws + 0.5 * delta1 + 0.5 * t.delta)  # config defaults
    editor.set_prompts(torch.randn(2, 16))

    path = tmp_path / "text.safetensors"
    save_network(path, editor, kind="text")
    again = load_network(path, "text")
    assert again.cfg == editor.cfg and again.cfg.prompts == ("ocean", "night")
    torch.testing.assert_close(again.prompt_embs, editor.prompt_embs)
    torch.testing.assert_close(again.edit(ws, text, eps=eps), editor.edit(ws, text, eps=eps))

    # The --no-text-encoder ablation: no Text Encoder weights in the file, ws + strength * delta1.
    ablation = build_text_editor(G_CFG, 16, "tiny", text_encoder=False)
    save_network(tmp_path / "ablation.safetensors", ablation, kind="text")
    names = checkpoint.read_checkpoint(tmp_path / "ablation.safetensors").tensors
    assert not any(k.startswith("text_encoder.") for k in names) and any(k.startswith("mapper.") for k in names)
    ablation = load_network(tmp_path / "ablation.safetensors", "text")
    assert ablation.text_encoder is None
    torch.testing.assert_close(ablation.edit(ws, text, alpha=0.3, strength=2.0), ws + 2.0 * ablation.mapper(ws, text))


def test_text_editor_checks_generator_and_clip(tiny_clip):
    editor = build_text_editor(G_CFG, 32, "tiny", generator_sha256="1" * 64, clip_sha256="2" * 64)
    editor.check_generator(Generator(G_CFG), "1" * 64)
    with pytest.raises(CheckpointError, match="6 ws of 32"):
        editor.check_generator(Generator(GENERATOR_PRESETS["demo"]))
    with pytest.raises(CheckpointError, match="matching generator"):
        editor.check_generator(Generator(G_CFG), "3" * 64)
    editor.check_clip(ClipEncoder(tiny_clip))  # hash unknown: only the size is checked
    with pytest.raises(CheckpointError, match="trained with CLIP"):
        editor.check_clip(ClipEncoder(tiny_clip, name="other.safetensors", sha256="4" * 64))
    with pytest.raises(ConfigError):
        TextEditorConfig(mapper=mapper_config(6, 32, 16), text_encoder=TextEncoderConfig(8, 6, 32))


# ----------------------------------------------------------------------------------------------------------
# Losses.


def test_clip_loss_and_similarity_fallback(tiny_clip, tmp_path, monkeypatch):
    from bgedit_cli.losses.clip_loss import ClipSimilarityLoss, build_similarity_loss, clip_loss

    enc = ClipEncoder(tiny_clip)
    img, texts = _toy_batch()
    with torch.no_grad():
        feats = enc.encode_image(img)
        torch.testing.assert_close(clip_loss(enc, img, feats), torch.zeros(4), atol=1e-5, rtol=0)
        torch.testing.assert_close(clip_loss(enc, img, -feats[0]), 1 + feats @ feats[0])  # one prompt for all
    monkeypatch.setenv("BGEDIT_HOME", str(tmp_path))
    sim, name = build_similarity_loss(enc)  # no MoCo file here: CLIP image features, and the name says so
    assert isinstance(sim, ClipSimilarityLoss) and name.startswith("clip-image") and "MoCo" in name
    edit = img.clone().requires_grad_()
    loss = sim(edit, img)
    torch.testing.assert_close(loss.detach(), torch.zeros(4), atol=1e-5, rtol=0)
    (sim(edit, img.flip(0)).sum()).backward()
    assert edit.grad.abs().sum() > 0
    with pytest.raises(MissingWeightsError, match="--moco"):
        build_similarity_loss(enc, tmp_path / "missing.pth.tar")


# ----------------------------------------------------------------------------------------------------------
# Pipeline.


@pytest.fixture(scope="module")
def tiny_setup():
    torch.manual_seed(0)
    G = Generator(G_CFG).eval().requires_grad_(False)
    editor = build_text_editor(G_CFG, 16, "tiny").eval()
    n = 3
    ws = G.mapping(torch.randn(n, G_CFG.z_dim))[:, None].repeat(1, G_CFG.num_ws, 1)
    deltas = {k: 0.1 * torch.randn(n, *shape) for k, shape in list(G.layer_shapes().items())[:2]}
    inv = Inversion(ws=ws, w=ws[:, 0], delta_img=deltas)
    return G, editor, inv


def test_text_edit_batches_samples_and_keeps_deltas(tiny_setup):
    G, editor, inv = tiny_setup
    text = torch.randn(1, 16)
    k = 2
    images = text_edit(G, inv, editor, text, alpha=0.4, strength=1.5, seed=7, samples=k)
    assert images.shape == (3 * k, 3, 16, 16)
    # Rows n*K + k: image n with eps_k; the same (image, seed, k) alone gives the same result.
    alone = text_edit(G, inv.select(2), editor, text, alpha=0.4, strength=1.5, seed=7, samples=k)
    torch.testing.assert_close(alone, images[2 * k:3 * k], atol=1e-5, rtol=1e-5)
    # Equal to editing and rendering one by one, with that image's deltas.
    eps = torch.randn((k, 6, 32), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ws1 = editor.edit(inv.ws[1:2], text, alpha=0.4, strength=1.5, eps=eps[1:2])
        ref = render(G, ws1, {name: d[1:2] for name, d in inv.delta_img.items()})
    torch.testing.assert_close(images[1 * k + 1:1 * k + 2], ref, atol=1e-5, rtol=1e-5)
    # Samples differ from each other, and the edit moves the image.
    assert not torch.allclose(images[0], images[1])
    unedited = text_edit(G, inv, editor, text, strength=0.0, samples=1)
    torch.testing.assert_close(unedited, render(G, inv.ws, inv.delta_img), atol=1e-5, rtol=1e-5)


def test_text_edit_refuses_bad_requests(tiny_setup):
    G, editor, inv = tiny_setup
    ablation = dataclasses.replace(editor.cfg, text_encoder=None)
    with pytest.raises(InputError, match="no Text Encoder"):
        edit_codes(TextEditor(ablation), inv.ws, torch.randn(16), samples=2)
    with pytest.raises(InputError, match="one per image"):
        edit_codes(editor, inv.ws, torch.randn(2, 16))
    with pytest.raises(InputError, match="codes of 6 x 32"):
        edit_codes(editor, torch.randn(1, 10, 128), torch.randn(16))
    assert edit_codes(editor, inv.ws, torch.randn(3, 16), samples=1).shape == (3, 6, 32)  # one prompt per image


def test_nearest_trained_prompts():
    trained = torch.eye(3, 4)
    best, ranking = nearest_trained_prompts(torch.tensor([0.0, 2.0, 1.0, 0.0]), trained, ["sea", "night", "snow"])
    assert [name for name, _ in ranking] == ["night", "snow", "sea"]
    assert best == pytest.approx(2 / 5 ** 0.5) and ranking[2][1] == pytest.approx(0.0)
    assert nearest_trained_prompts(torch.ones(4), torch.zeros(0, 4), [])[1] == []
