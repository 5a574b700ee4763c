"""`bgedit train text` and `bgedit text-edit` end to end at tiny size (random generator, inversion and CLIP)."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_clean_error

PROMPTS = "snow,night"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    from bgedit_cli.data.synth import synthesize

    out = tmp_path_factory.mktemp("synth16")
    synthesize(out, num=24, resolution=16, seed=0, mixing_pairs=0, workers=1, force=True)
    return out


@pytest.fixture(scope="module")
def base_bundle(tmp_path_factory) -> Path:
    """generator + proposed inversion + a CLIP, all tiny and random."""
    from bgedit_cli.checkpoint import file_sha256, save_network
    from bgedit_cli.nn.clip_model import ClipModel, clip_config
    from bgedit_cli.nn.inversion import build_inversion
    from bgedit_cli.nn.segmenter import Segmenter, segmenter_preset
    from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator

    root = tmp_path_factory.mktemp("bundle")
    torch.manual_seed(0)
    G = Generator(GENERATOR_PRESETS["tiny"])
    G.update_w_avg(500)
    save_network(root / "generator.safetensors", G, kind="generator")
    net = build_inversion("proposed", "tiny", G, file_sha256(root / "generator.safetensors"))
    save_network(root / "inversion.safetensors", net, kind="inversion")
    save_network(root / "clip.safetensors", ClipModel(clip_config("tiny", image_resolution=16)), kind="clip")
    save_network(root / "segmenter.safetensors", Segmenter(segmenter_preset("tiny")), kind="segmenter")
    return root


def new_bundle(base: Path, root: Path) -> Path:
    root.mkdir(parents=True)
    for name in ("generator", "inversion", "clip", "segmenter"):
        shutil.copy(base / f"{name}.safetensors", root / f"{name}.safetensors")
    return root


def train(cli, data: Path, bundle: Path, *extra):
    return cli(["train", "text", "--data", data, "--model", bundle, "--preset", "tiny", "--device", "cpu", "--quiet",
                "--prompts", PROMPTS, "--num-latents", "8", "--batch-size", "4", *extra])


def run_dirs(bundle: Path) -> list[Path]:
    return sorted((bundle / "runs").glob("text-*"))


@pytest.fixture(scope="module")
def trained(base_bundle, scenes, tmp_path_factory) -> Path:
    from bgedit_cli.cli.app import app
    from typer.testing import CliRunner

    bundle = new_bundle(base_bundle, tmp_path_factory.mktemp("t") / "bundle")
    args = ["train", "text", "--data", str(scenes), "--model", str(bundle), "--preset", "tiny", "--device", "cpu",
            "--quiet", "--prompts", PROMPTS, "--num-latents", "8", "--batch-size", "4", "--steps", "4",
            "--eval-every", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return bundle


# ----------------------------------------------------------------------------------------------------------
# Training.


def test_train_writes_a_text_model_with_its_prompts(trained, scenes):
    from bgedit_cli.checkpoint import file_sha256, load_network
    from bgedit_cli.training.common import read_log

    editor = load_network(trained / "text.safetensors", "text")
    assert editor.cfg.prompts == ("snow", "night") and editor.text_encoder is not None
    assert editor.cfg.generator_sha256 == file_sha256(trained / "generator.safetensors")
    assert editor.cfg.clip_sha256 == file_sha256(trained / "clip.safetensors")
    assert editor.prompt_embs.abs().sum() > 0  # the trained prompts' embeddings, for refusing far prompts
    prov = editor.provenance
    assert prov["steps"] == 4 and prov["similarity_loss"].startswith("clip-image")  # the stand-in, stated
    assert prov["command"].startswith("bgedit train text") and '--prompts "snow,night"' in prov["command"]

    (run,) = run_dirs(trained)
    log = read_log(run / "log.jsonl")
    assert log[0]["event"] == "start" and log[0]["similarity_loss"].startswith("clip-image")
    steps = [r for r in log if "train/loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert all({"train/clip", "train/sim"} <= set(r) and np.isfinite(r["train/loss"]) for r in steps)
    evals = [r for r in log if r.get("event") == "eval"]
    assert [r["step"] for r in evals] == [2, 4] and all(0 <= r["val/clip_rise"] <= 1 for r in evals)
    assert {"val/clip_gain/snow", "val/clip_gain/night"} <= set(evals[-1])
    grid = Image.open(run / "samples" / "step-000004.png")  # rows: codes; columns: reconstruction + prompts
    rows = min(6, len(list((scenes / "images" / "validation").glob("*.png"))))
    assert grid.size == (3 * 16, rows * 16)
    assert list((trained / "cache").glob("text-codes-training-*.safetensors"))  # inverted once, reused


def test_the_loss_moves_the_edit_toward_the_prompt(base_bundle, scenes, tmp_path):
    """A few steps lower the CLIP loss on a fixed batch (the edit learns the prompt's direction)."""
    from bgedit_cli.checkpoint import file_sha256, load_network
    from bgedit_cli.nn.clip_model import ClipEncoder
    from bgedit_cli.training.configs import TextTrainConfig
    from bgedit_cli.training.runner import StageRun
    from bgedit_cli.training.text import TextStage, TextTrainOptions, sample_codes

    G = load_network(base_bundle / "generator.safetensors", "generator").requires_grad_(False)
    clip = load_network(base_bundle / "clip.safetensors", "clip")
    encoder = ClipEncoder(clip, name="clip", sha256=file_sha256(base_bundle / "clip.safetensors"))
    cfg = TextTrainConfig.for_preset("tiny", prompts=("snow", "night"), lr=0.5, sim_lambda=0.0)
    opts = TextTrainOptions(data=scenes, bundle=tmp_path, device="cpu")
    run = StageRun.open("text", tmp_path, device="cpu", resume=False)
    codes = sample_codes(G, 8, seed=0, truncation=0.7, device=torch.device("cpu"))
    stage = TextStage(cfg, opts, run, G, "sha", encoder, codes, codes[:2], {})
    prompt = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    eps = torch.zeros(8, G.cfg.num_ws, G.cfg.w_dim)
    first = float(stage.losses(codes, prompt, eps)[1]["clip"].detach())
    for _ in range(15):
        loss, _, _ = stage.losses(codes, prompt, eps)
        stage.optimizer.zero_grad()
        loss.backward()
        stage.optimizer.step()
    assert float(stage.losses(codes, prompt, eps)[1]["clip"].detach()) < first - 0.01


def test_layout_term_applies_to_layout_keeping_prompts_only(base_bundle, scenes, tmp_path, cli):
    """--layout-lambda: the segmenter's reading of the edit is pulled toward the reconstruction's for the prompts
    of --keep-layout (default: the trained style names), and only for those; the setting is kept on resume."""
    from bgedit_cli.checkpoint import file_sha256, load_network
    from bgedit_cli.nn.clip_model import ClipEncoder
    from bgedit_cli.training.common import read_log
    from bgedit_cli.training.configs import TextTrainConfig
    from bgedit_cli.training.runner import StageRun
    from bgedit_cli.training.text import TextStage, TextTrainOptions, layout_prompts, sample_codes

    G = load_network(base_bundle / "generator.safetensors", "generator").requires_grad_(False)
    S = load_network(base_bundle / "segmenter.safetensors", "segmenter").eval().requires_grad_(False)
    encoder = ClipEncoder(load_network(base_bundle / "clip.safetensors", "clip"), name="clip",
                          sha256=file_sha256(base_bundle / "clip.safetensors"))
    cfg = TextTrainConfig.for_preset("tiny", prompts=("snow", "ocean"), layout_lambda=1.0)
    assert layout_prompts(cfg, scenes) == ("snow",)  # "ocean" may move the layout
    run = StageRun.open("text", tmp_path / "unit", device="cpu", resume=False)
    codes = sample_codes(G, 4, seed=0, truncation=0.7, device=torch.device("cpu"))
    stage = TextStage(cfg, TextTrainOptions(data=scenes, bundle=tmp_path / "unit", device="cpu"), run, G, "sha",
                      encoder, codes, codes[:2], {}, S)
    eps = torch.zeros(4, G.cfg.num_ws, G.cfg.w_dim)
    ocean_only = stage.losses(codes, torch.tensor([1, 1, 1, 1]), eps)[1]
    assert float(ocean_only["layout"].detach()) == 0.0
    loss, terms, _ = stage.losses(codes, torch.tensor([0, 0, 1, 1]), eps)
    assert float(terms["layout"].detach()) > 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in stage.params)

    bundle = new_bundle(base_bundle, tmp_path / "b")
    result = train(cli, scenes, bundle, "--steps", "2", "--layout-lambda", "0.5", "--latents", "samples")
    assert result.exit_code == 0, (result.output, result.exception)
    (run_dir,) = run_dirs(bundle)
    assert all("train/layout" in r for r in read_log(run_dir / "log.jsonl") if "train/loss" in r)
    prov = load_network(bundle / "text.safetensors", "text").provenance
    assert "--layout-lambda 0.5" in prov["command"]
    again = train(cli, scenes, bundle, "--resume", "--steps", "3", "--keep-layout", "night")
    assert_clean_error(again, "--keep-layout night differs")
    assert_clean_error(train(cli, scenes, bundle, "--force", "--keep-layout", "fog", "--layout-lambda", "1"),
                       "--keep-layout: fog not among the trained prompts")
    assert_clean_error(train(cli, scenes, bundle, "--force", "--prompts", "ocean", "--layout-lambda", "1"),
                       "no trained prompt keeps the layout")


def test_layout_prompts_are_the_data_s_own_style_names(base_bundle, scenes, tmp_path, cli):
    """Without --keep-layout the layout term keeps the trained prompts that the data's vocabulary.json names as
    looks, not the renderer's current table."""
    import dataclasses

    from bgedit_cli.data.synth import read_vocabulary, write_vocabulary
    from bgedit_cli.training.configs import TextTrainConfig
    from bgedit_cli.training.text import layout_prompts

    cfg = TextTrainConfig.for_preset("tiny", prompts=("snow", "ocean", "night"))
    assert cfg.layout_prompts(("ocean", "dusk")) == ("ocean",)
    assert dataclasses.replace(cfg, keep_layout=("night",)).layout_prompts(()) == ("night",)
    data = tmp_path / "data"
    data.mkdir()
    write_vocabulary(data, dataclasses.replace(read_vocabulary(scenes), style_names=("dusk", "ocean")))
    assert layout_prompts(cfg, data) == ("ocean",) and layout_prompts(cfg, scenes) == ("snow", "night")
    bundle = new_bundle(base_bundle, tmp_path / "b")
    assert_clean_error(train(cli, data, bundle, "--prompts", "snow,night", "--layout-lambda", "1"),
                       "no trained prompt keeps the layout")


def test_no_text_encoder_holds_no_text_encoder_weights(base_bundle, scenes, tmp_path, cli):
    from bgedit_cli.checkpoint import load_network, read_checkpoint

    bundle = new_bundle(base_bundle, tmp_path / "b")
    result = train(cli, scenes, bundle, "--steps", "2", "--no-text-encoder", "--latents", "samples")
    assert result.exit_code == 0, (result.output, result.exception)
    tensors = read_checkpoint(bundle / "text.safetensors", "text").tensors
    assert tensors and not any(k.startswith("text_encoder.") for k in tensors)
    assert load_network(bundle / "text.safetensors", "text").text_encoder is None


def test_resume_after_ctrl_c_is_exact(base_bundle, scenes, tmp_path, cli, monkeypatch):
    from bgedit_cli.checkpoint import read_checkpoint
    from bgedit_cli.training import common

    args = ("--steps", "6", "--eval-every", "0", "--seed", "3", "--latents", "both")
    a, b = new_bundle(base_bundle, tmp_path / "a"), new_bundle(base_bundle, tmp_path / "b")
    assert train(cli, scenes, a, *args).exit_code == 0
    real_update = common.TrainProgress.update
    calls = []

    def interrupting_update(self, *x, **k):  # Ctrl-C (a real SIGINT) during step 3
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real_update(self, *x, **k)

    monkeypatch.setattr(common.TrainProgress, "update", interrupting_update)
    cut = train(cli, scenes, b, *args)
    monkeypatch.setattr(common.TrainProgress, "update", real_update)
    assert cut.exit_code == 130 and "interrupted at step 3/6" in cut.stderr and "--resume" in cut.stderr
    assert_clean_error(train(cli, scenes, b, "--resume", "--alpha", "0.2"), "--alpha 0.2 differs")
    resumed = cli(["train", "text", "--data", scenes, "--model", b, "--resume", "--device", "cpu", "--quiet"])
    assert resumed.exit_code == 0, (resumed.output, resumed.exception)
    ta = read_checkpoint(a / "text.safetensors", "text").tensors
    tb = read_checkpoint(b / "text.safetensors", "text").tensors
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_train_errors(base_bundle, scenes, tmp_path, cli, monkeypatch):
    monkeypatch.setenv("BGEDIT_HOME", str(tmp_path / "home"))
    bundle = new_bundle(base_bundle, tmp_path / "b")
    assert_clean_error(train(cli, scenes, bundle, "--prompts", " , "), "--prompts")
    assert_clean_error(train(cli, scenes, bundle, "--latents", "dreams"), "--latents dreams")
    assert_clean_error(train(cli, scenes, bundle, "--clip", tmp_path / "nowhere.pt"), "no such file")
    assert_clean_error(train(cli, scenes, bundle, "--resume"), "no text run")
    (bundle / "clip.safetensors").unlink()  # no CLIP anywhere: OpenAI's file is named, with where to put it
    assert_clean_error(train(cli, scenes, bundle), "ViT-B-32.pt")
    assert not (bundle / "text.safetensors").exists()


def test_read_prompts_from_the_option_or_the_file(tmp_path, cli):
    from bgedit_cli.errors import InputError
    from bgedit_cli.training.configs import read_prompts

    assert read_prompts(None, None) is None
    assert read_prompts(" snow, ,a village ", None) == ("snow", "a village")
    listed = tmp_path / "prompts.txt"
    listed.write_text("snow\n\n  a village, at dusk  \n", encoding="utf-8")
    assert read_prompts(None, listed) == ("snow", "a village, at dusk")  # one prompt a line, commas kept
    with pytest.raises(InputError, match="not both"):
        read_prompts("snow", listed)
    (tmp_path / "latin1.txt").write_bytes("neige \xe9t\xe9".encode("latin-1"))
    for bad in (tmp_path / "nowhere.txt", tmp_path / "latin1.txt"):
        with pytest.raises(InputError, match=f"--prompts-file {bad}: cannot read it"):
            read_prompts(None, bad)
    args = ["train", "text", "--data", tmp_path, "--model", tmp_path, "--quiet"]
    assert_clean_error(cli([*args, "--prompts-file", tmp_path / "nowhere.txt"]), "--prompts-file", "cannot read it")
    assert_clean_error(cli([*args, "--prompts", "snow", "--prompts-file", listed]), "not both")


# ----------------------------------------------------------------------------------------------------------
# Editing.


def test_text_edit_images_and_latents(trained, scenes, tmp_path, cli):
    images = sorted((scenes / "images" / "validation").glob("*.png"))[:2]
    inv = cli(["invert", images[0], "--model", trained, "--out", tmp_path / "inv", "--quiet", "--steps", "1"])
    assert inv.exit_code == 0, inv.output
    latent = tmp_path / "inv" / f"{images[0].stem}.latent.safetensors"

    out = tmp_path / "edits"
    res = cli(["text-edit", images[0], images[1], latent, "snow", "--model", trained, "--out-dir", out,
               "--samples", "2", "--steps", "1", "--seed", "5", "--json"])
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{stem}.snow.{k}.png" for stem in (images[0].stem, images[1].stem) for k in (0, 1))
    # The image and its own latent file would write the same outputs: the second is reported, the rest done.
    import json

    assert res.exit_code == 1, (res.output, res.exception)
    report = json.loads(res.stdout)
    assert len(report["outputs"]) == 2 and len(report["failed"]) == 1
    assert "same name stem" in report["failed"][0]["error"]

    def edit(*extra):
        target = tmp_path / f"one-{len(list(tmp_path.glob('one-*')))}.png"
        r = cli(["text-edit", latent, "snow", "--model", trained, "--out", target, "--quiet", *extra])
        assert r.exit_code == 0, (r.output, r.exception)
        return np.asarray(Image.open(target))

    same = edit("--seed", "1"), edit("--seed", "1")
    assert np.array_equal(*same)
    assert not np.array_equal(edit("--seed", "1", "--alpha", "0"), edit("--seed", "1", "--alpha", "1"))
    assert not np.array_equal(edit("--seed", "1", "--alpha", "0"), edit("--seed", "2", "--alpha", "0"))


def test_edit_paths_is_the_command_in_one_call(trained, scenes, tmp_path):
    """`bgedit text-edit`'s one call: inputs, models, the text model and its prompt gate, progress, failures."""
    from bgedit_cli.distributed import Dist
    from bgedit_cli.errors import InputError
    from bgedit_cli.pipelines.text_edit import edit_paths

    images = sorted((scenes / "images" / "validation").glob("*.png"))[:2]
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    stages, failures = [], []
    run = edit_paths([images[0], bad, images[1]], "snow", out_dir=tmp_path / "edits", model=trained, device="cpu",
                     steps=1, batch_size=2, samples=2, progress=lambda *p: stages.append(p),
                     on_failure=failures.append)
    assert run.shard == Dist() and run.match.prompt == "snow" and run.match.ranking[0][0] == "snow"
    assert run.alpha == 0.5 and run.text_encoder  # the text model's alpha; trained with its Text Encoder
    assert [d["input"] for d in run.report.done] == [str(p) for p in images] and failures == run.report.failed
    assert [f.input for f in failures] == [str(bad)] and stages[0] == ("editing", 0, 3) and stages[-1][1] == 3
    assert len(list((tmp_path / "edits").glob("*.snow.*.png"))) == 4
    assert edit_paths([images[0]], "night", out=tmp_path / "one.png", model=trained, device="cpu", steps=1,
                      alpha=0.2).alpha == 0.2
    with pytest.raises(InputError, match="--out FILE .* or --out-dir"):
        edit_paths([images[0]], "snow", model=trained, device="cpu", steps=1)


def test_text_edit_errors(trained, scenes, tmp_path, cli, monkeypatch):
    from bgedit_cli.pipelines import models as module

    image = sorted((scenes / "images" / "validation").glob("*.png"))[0]
    base = ["--model", trained, "--out", tmp_path / "x.png", "--steps", "1"]
    monkeypatch.setattr(module, "MIN_PROMPT_COSINE", 0.9999)  # a random CLIP sees every prompt as close
    assert_clean_error(cli(["text-edit", image, "a zebra crossing at noon", *base]), "far from every prompt",
                       '"snow"', "--force-prompt")
    assert cli(["text-edit", image, "a zebra crossing at noon", *base, "--force-prompt"]).exit_code == 0
    assert_clean_error(cli(["text-edit", image, "  ", *base, "--force"]), "the prompt is empty")
    assert_clean_error(cli(["text-edit", image, "snow", *base, "--text", tmp_path / "no.safetensors"]),
                       "--text", "no such file")
    assert_clean_error(cli(["text-edit", image, "snow", *base, "--clip", tmp_path / "none.pt"]), "no such file")
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    assert_clean_error(cli(["text-edit", bad, "snow", "--model", trained, "--out", tmp_path / "y.png"]), "bad.png")
    assert not (tmp_path / "y.png").exists()
    assert_clean_error(cli(["text-edit", image, image, "snow", *base]), "--out-dir")
    assert_clean_error(cli(["text-edit", image, "snow", "--model", trained, "--out", tmp_path / "z.png",
                            "--samples", "2"]), "--out-dir")
