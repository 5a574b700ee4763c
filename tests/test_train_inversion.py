"""`bgedit train inversion` (loss falls, files, exact resume, errors) and the evaluation functions, on a tiny
generator and a tiny synthetic ADE20K-layout folder written by `bgedit data synth`."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bgedit_cli.cli.app import app
from conftest import assert_clean_error

runner = CliRunner()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    result = runner.invoke(app, ["data", "synth", "--out", str(out), "--num", "40", "--resolution", "16",
                                 "--seed", "0", "--mixing-pairs", "3", "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory) -> Path:
    """A tiny random generator (16 px) with its w_avg set."""
    from bgedit_cli.checkpoint import save_network
    from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator

    torch.manual_seed(0)
    G = Generator(GENERATOR_PRESETS["tiny"])
    G.update_w_avg(500)
    path = tmp_path_factory.mktemp("g") / "generator.safetensors"
    save_network(path, G, kind="generator")
    return path


def new_bundle(root: Path, generator_file: Path) -> Path:
    root.mkdir(parents=True)
    shutil.copy(generator_file, root / "generator.safetensors")
    return root


def train(data: Path, bundle: Path, *extra: str):
    args = ["train", "inversion", "--data", str(data), "--model", str(bundle), "--preset", "tiny", "--quiet",
            "--device", "cpu", "--eval-images", "4", *extra]
    return runner.invoke(app, args)


def run_folders(bundle: Path, stage: str = "inversion") -> list[Path]:
    return sorted(p for p in (bundle / "runs").glob(f"{stage}-*") if p.name[len(stage) + 1].isdigit())


# ----------------------------------------------------------------------------------------------------------
# Training.


def test_train_loss_falls_and_writes_a_loadable_model(scenes, generator_file, tmp_path):
    from PIL import Image

    from bgedit_cli.checkpoint import file_sha256, load_network
    from bgedit_cli.pipelines.invert import invert
    from bgedit_cli.training.common import read_log

    bundle = new_bundle(tmp_path / "bundle", generator_file)
    result = train(scenes, bundle, "--steps", "16", "--refine-steps", "1", "--lr", "3e-3", "--eval-every", "8",
                   "--snapshot-every", "8", "--ms-ssim-lambda", "0.5", "--json")
    assert result.exit_code == 0, result.output
    log = read_log(run_folders(bundle)[0] / "log.jsonl")
    start = log[0]
    assert start["event"] == "start" and start["losses"] == {"lambdas": {"l2": 1.0, "ms_ssim": 0.5},
                                                              "ms_ssim_variant": "ssim"}
    losses = [r["train/loss"] for r in log if "train/loss" in r]
    assert len(losses) == 16 and sum(losses[-4:]) < 0.7 * sum(losses[:4]), losses
    assert all(set(r) >= {"train/y0/l2", "train/y1/l2", "train/y1/ms_ssim"} for r in log if "train/loss" in r)
    evals = [r for r in log if r.get("event") == "eval"]
    assert [r["step"] for r in evals] == [8, 16] and all("val/y5/psnr" in r for r in evals)

    # The model file: kind inversion, rebuilt from the file alone, tied to the generator's hash.
    G = load_network(bundle / "generator.safetensors", "generator")
    net = load_network(bundle / "inversion.safetensors", "inversion")
    assert net.cfg.generator_sha256 == file_sha256(bundle / "generator.safetensors")
    assert net.variant == "proposed" and net.provenance["steps"] == 16
    net.check_generator(G, file_sha256(bundle / "generator.safetensors"))
    img = torch.zeros(1, 3, 16, 16)
    seg = torch.zeros(1, 151, 16, 16)
    seg[:, 3] = 1
    assert invert(G, net, img, seg, steps=2).images.shape == (1, 3, 16, 16)

    # Sample grid: one row per validation image shown, columns input | y_0 .. y_5.
    grid = Image.open(run_folders(bundle)[0] / "samples" / "step-000016.png")
    assert grid.size == (7 * 16, 4 * 16)
    # Without --force an existing model is not overwritten.
    again = train(scenes, bundle, "--steps", "1")
    assert_clean_error(again, "--force")

    # bgedit evaluate on the result: per-step scores, mixing tables, JSON; no LPIPS number at 16 px.
    import json

    result = runner.invoke(app, ["evaluate", "--data", str(scenes), "--model", str(bundle), "--limit", "4",
                                 "--steps", "2", "--mixing-scenes", "3", "--metrics", "l2,lpips,psnr,ms_ssim",
                                 "--device", "cpu", "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows"] == ["proposed"] and report["settings"]["num_images"] == 4
    assert len(report["reconstruction"]["proposed"]["per_step"]) == 3 and report["mixing"]["proposed"]["pairs"] == 6
    lpips = report["metrics"]["proposed"]["lpips"]
    assert lpips["value"] is None and "32x32" in lpips["unavailable_reason"]
    assert "lpips" not in report["reconstruction"]["proposed"]["final"]
    nothing = runner.invoke(app, ["evaluate", "--data", str(scenes), "--model", str(tmp_path / "nothing")])
    assert nothing.exit_code == 1 and nothing.stderr.startswith("Error: ")


def test_resume_after_ctrl_c_is_exact(scenes, generator_file, tmp_path, monkeypatch):
    from bgedit_cli.checkpoint import read_checkpoint
    from bgedit_cli.training import common

    args = ("--steps", "6", "--refine-steps", "2", "--eval-every", "0", "--seed", "3", "--ms-ssim-lambda", "0.2",
            "--eval-images", "2")
    a, b = new_bundle(tmp_path / "a", generator_file), new_bundle(tmp_path / "b", generator_file)
    straight = train(scenes, a, *args)
    assert straight.exit_code == 0, straight.output

    real_update = common.TrainProgress.update
    calls = []

    def interrupting_update(self, *args, **kwargs):  # Ctrl-C (a real SIGINT) during step 3
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real_update(self, *args, **kwargs)

    monkeypatch.setattr(common.TrainProgress, "update", interrupting_update)
    cut = train(scenes, b, *args)
    monkeypatch.setattr(common.TrainProgress, "update", real_update)
    assert cut.exit_code == 130 and "interrupted at step 3/6" in cut.stderr and "--resume" in cut.stderr

    changed = train(scenes, b, "--resume", "--refine-steps", "1")
    assert_clean_error(changed, "--refine-steps 1 differs from the resumed run's 2")
    resumed = train(scenes, b, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert len(run_folders(b)) == 1
    ta = read_checkpoint(a / "inversion.safetensors", "inversion").tensors
    tb = read_checkpoint(b / "inversion.safetensors", "inversion").tensors
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    steps = [r["step"] for r in common.read_log(run_folders(b)[0] / "log.jsonl") if "train/loss" in r]
    assert steps == list(range(1, 7))


def test_baseline_and_phased_schedule(scenes, generator_file, tmp_path):
    from bgedit_cli.checkpoint import load_network
    from bgedit_cli.training.common import read_log

    bundle = new_bundle(tmp_path / "bundle", generator_file)
    result = train(scenes, bundle, "--variant", "baseline", "--steps", "4", "--schedule", "phased",
                   "--encoder-fraction", "0.5", "--refine-steps", "1", "--eval-every", "0", "--snapshot-every", "0")
    assert result.exit_code == 0, result.output
    assert not (bundle / "inversion.safetensors").exists()
    net = load_network(bundle / "inversion-baseline.safetensors", "inversion")
    assert net.variant == "baseline" and net.seg_encoder is None
    log = read_log(run_folders(bundle, "inversion-baseline")[0] / "log.jsonl")
    steps = [r for r in log if "train/loss" in r]
    assert [r["phase"] for r in steps] == ["encoders", "encoders", "hypernetworks", "hypernetworks"]
    assert "train/y1/l2" not in steps[0] and "train/y1/l2" in steps[-1]
    # `--resume` of the proposed variant never picks up a baseline run (runs/inversion-baseline-*).
    assert_clean_error(train(scenes, bundle, "--resume"), "--resume: no inversion run")


def test_seg_layers_sets_the_split(scenes, generator_file, tmp_path):
    """--seg-layers chooses the W+ rows the Seg Encoder drives (stored in the file); out of range is an error."""
    from bgedit_cli.checkpoint import load_network

    bundle = new_bundle(tmp_path / "bundle", generator_file)
    result = train(scenes, bundle, "--steps", "2", "--seg-layers", "1", "--eval-every", "0", "--snapshot-every", "0",
                   "--refine-steps", "1")
    assert result.exit_code == 0, result.output
    net = load_network(bundle / "inversion.safetensors", "inversion")
    assert net.seg_layers == 1 and net.seg_encoder.cfg.num_queries == 1
    assert_clean_error(train(scenes, bundle, "--steps", "2", "--seg-layers", "99", "--force"), "seg_layers")


def test_pretrain_on_generator_samples(scenes, generator_file, tmp_path):
    """--pretrain-steps: the first steps fit the encoders to known codes (latent loss that falls), then the
    image losses take over; the baseline pre-trains its image encoder alone."""
    from bgedit_cli.checkpoint import load_network, save_network
    from bgedit_cli.nn.segmenter import Segmenter, segmenter_preset
    from bgedit_cli.training.common import read_log

    bundle = new_bundle(tmp_path / "bundle", generator_file)
    torch.manual_seed(0)
    save_network(bundle / "segmenter.safetensors", Segmenter(segmenter_preset("tiny")), kind="segmenter")
    result = train(scenes, bundle, "--steps", "12", "--pretrain-steps", "10", "--seg-layers", "2", "--lr", "0.003",
                   "--eval-every", "0", "--snapshot-every", "0", "--refine-steps", "1")
    assert result.exit_code == 0, result.output
    log = [r for r in read_log(run_folders(bundle)[0] / "log.jsonl") if "train/loss" in r]
    assert [r["phase"] for r in log] == ["pretrain"] * 10 + ["joint"] * 2
    pre = [r["train/pre/w_img"] + r["train/pre/w_seg"] for r in log[:10]]
    assert sum(pre[-3:]) < sum(pre[:3])
    assert "train/y0/l2" in log[-1]
    net = load_network(bundle / "inversion.safetensors", "inversion")
    assert net.seg_layers == 2
    result = train(scenes, bundle, "--variant", "baseline", "--steps", "3", "--pretrain-steps", "2",
                   "--eval-every", "0", "--snapshot-every", "0", "--refine-steps", "1")
    assert result.exit_code == 0, result.output
    log = [r for r in read_log(run_folders(bundle, "inversion-baseline")[0] / "log.jsonl") if "train/loss" in r]
    assert "train/pre/w_img" in log[0] and "train/pre/w_seg" not in log[0]
    assert_clean_error(train(scenes, bundle, "--steps", "3", "--pretrain-steps", "5", "--force"), "--pretrain-steps")


def test_init_from_continues_the_hypernetworks_only(scenes, generator_file, tmp_path):
    """--init-from starts from a trained file; with --schedule phased --encoder-fraction 0 the encoders stay as
    they were and only the hypernetworks train. Another variant's file is refused."""
    from bgedit_cli.checkpoint import load_network

    first = new_bundle(tmp_path / "first", generator_file)
    common = ("--eval-every", "0", "--snapshot-every", "0", "--refine-steps", "1")
    assert train(scenes, first, "--steps", "2", *common).exit_code == 0
    start = load_network(first / "inversion.safetensors", "inversion")
    second = new_bundle(tmp_path / "second", generator_file)
    result = train(scenes, second, "--steps", "2", "--init-from", str(first / "inversion.safetensors"),
                   "--schedule", "phased", "--encoder-fraction", "0", *common)
    assert result.exit_code == 0, result.output
    after = load_network(second / "inversion.safetensors", "inversion")
    a, b = start.state_dict(), after.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith(("image_encoder.", "seg_encoder.")))
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("hyper_img."))
    assert train(scenes, first, "--variant", "baseline", "--steps", "1", *common).exit_code == 0
    assert_clean_error(train(scenes, second, "--steps", "1", "--force", "--init-from",
                             str(first / "inversion-baseline.safetensors"), *common), "--init-from")


# ----------------------------------------------------------------------------------------------------------
# Errors: one `Error:` line, exit 1.


def test_cli_errors(scenes, generator_file, tmp_path, monkeypatch):
    monkeypatch.setenv("BGEDIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    bundle = new_bundle(tmp_path / "bundle", generator_file)
    assert_clean_error(train(scenes, bundle, "--resume"), "--resume: no inversion run")
    assert_clean_error(train(scenes, tmp_path / "empty"), "no generator network", "bgedit train generator")
    assert_clean_error(train(tmp_path / "nowhere", bundle), "no such folder")
    assert_clean_error(train(scenes, bundle, "--variant", "other"), "--variant other")
    assert_clean_error(train(scenes, bundle, "--moco-lambda", "0.5"), "moco_v2_800ep_pretrain.pth.tar not found",
                       "facebookresearch/moco")
    assert_clean_error(train(scenes, bundle, "--batch-size", "1000"), "fewer than one batch")
    no_maps = tmp_path / "nomaps"
    shutil.copytree(scenes / "images", no_maps / "images")
    assert_clean_error(train(no_maps, bundle), "annotations")
    assert not (bundle / "runs").exists() or not any((bundle / "runs").iterdir())  # nothing written


# ----------------------------------------------------------------------------------------------------------
# Evaluation functions.


def test_mixing_benchmark_pairs_each_answer_with_its_ground_truth(scenes, generator_file, tmp_path):
    """A mixing folder whose 'ground truth' for style(a, b) is b's image and for content(a, b) is a's: then the
    trivial answer input_b must score exactly for style and input_a exactly for content."""
    from bgedit_cli.checkpoint import load_network
    from bgedit_cli.nn.inversion import build_inversion
    from bgedit_cli.pipelines.evaluation.mixing import mixing_scores
    from bgedit_cli.pipelines.evaluation.reconstruction import reconstruction_scores
    from bgedit_cli.data.ade20k import ADE20KDataset

    data = tmp_path / "data"
    shutil.copytree(scenes, data, ignore=shutil.ignore_patterns("textedit"))
    mix = data / "mixing" / "validation"
    names = sorted({p.name.split("__")[0] for p in mix.glob("*.png")})
    for a in names:
        for b in names:
            shutil.copy(data / "images" / "validation" / f"{b}.png", mix / f"{a}__{b}.png")  # style = b's image
    G = load_network(generator_file, "generator")
    torch.manual_seed(0)
    net = build_inversion("proposed", "tiny", G).eval()
    out = mixing_scores(G, net, data, steps=1, batch_size=4)
    assert out["scenes"] == 3 and out["pairs"] == 6
    assert out["style"]["input_b"]["l2"] == 0 and out["style"]["input_b"]["psnr"] == float("inf")
    assert out["content"]["input_a"]["l2"] == 0 and out["content"]["input_a"]["ms_ssim"] == pytest.approx(1.0)
    assert set(out["style"]) == {"mix_style(delta_img=a)", "mix_style(delta_img=b)", "recon_a", "recon_b",
                                 "input_a", "input_b"}
    assert out["style"]["recon_b"]["l2"] > 0

    baseline = build_inversion("baseline", "tiny", G).eval()
    out = mixing_scores(G, baseline, data, steps=1, batch_size=4)
    assert "w+ row swap" in out["style"] and out["split"] == 4

    scores, grid = reconstruction_scores(G, net, ADE20KDataset(data, "validation", resolution=16), num=3, steps=2,
                                         batch_size=2, grid_images=2)
    assert scores["images"] == 3 and len(scores["per_step"]) == 3 and scores["ms_ssim_variant"] == "ssim"
    assert len(grid) == 4 and grid[0].shape == (2, 3, 16, 16)


def test_layout_edit_term_trains_the_seg_path_only(scenes, generator_file, tmp_path):
    """--edit-layout-lambda: A redrawn on the next item's map, read back by the frozen segmenter; its gradients
    reach the Seg Encoder and hyper_seg, never the image encoder, hyper_img or the segmenter."""
    from bgedit_cli.checkpoint import load_network, save_network
    from bgedit_cli.io import one_hot_seg
    from bgedit_cli.nn.inversion import build_inversion
    from bgedit_cli.nn.segmenter import Segmenter, segmenter_preset
    from bgedit_cli.training.common import read_log
    from bgedit_cli.training.layout import class_colours, layout_edit_step, look_loss, map_labels, other_maps

    # The pieces: pairs, labels with ignored pixels, class colours.
    ids = torch.tensor([[[3, 3], [5, 255]], [[5, 5], [5, 5]]])
    seg = one_hot_seg(ids, num_classes=8)
    assert torch.equal(other_maps(seg)[0], seg[1]) and torch.equal(other_maps(seg)[1], seg[0])
    assert map_labels(seg).tolist() == [[[3, 3], [5, 255]], [[5, 5], [5, 5]]]
    img = torch.arange(24.0).reshape(2, 3, 2, 2)
    colours, pixels = class_colours(img, seg)
    assert pixels[0, 3] == 2 and torch.allclose(colours[0, 3], img[0, :, 0, :].mean(dim=1))
    assert look_loss(img, seg, colours, pixels) == 0  # no class with enough pixels in both: nothing to compare

    # One step on a tiny network: gradients only where they belong.
    G = load_network(generator_file, "generator")
    torch.manual_seed(0)
    net = build_inversion("proposed", "tiny", G, "0" * 64, seg_layers=2).train()
    segmenter = Segmenter(segmenter_preset("tiny")).eval().requires_grad_(False)
    from bgedit_cli.data.ade20k import ADE20KDataset

    data = ADE20KDataset(scenes, "training", resolution=16, flip=False, require_seg=True)
    img = torch.stack([data[i]["img"] for i in range(4)])
    seg = one_hot_seg(torch.stack([data[i]["seg"] for i in range(4)]))
    w = net.image_encoder(img, G).detach()
    scalars = layout_edit_step(G, net, segmenter, img, seg, w, None, refine_steps=2, layout_lambda=1.0,
                               look_lambda=1.0)
    assert scalars["edit/ce"] > 0 and scalars["edit/loss"] > 0
    grads = {name: any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
             for name, m in [("image_encoder", net.image_encoder), ("seg_encoder", net.seg_encoder),
                             ("hyper_img", net.hyper_img), ("hyper_seg", net.hyper_seg), ("segmenter", segmenter)]}
    assert grads == {"image_encoder": False, "seg_encoder": True, "hyper_img": False, "hyper_seg": True,
                     "segmenter": False}
    net.zero_grad(set_to_none=True)
    from bgedit_cli.losses import LossLambdas, build_inversion_loss
    from bgedit_cli.training.layout import map_only_step

    loss_fn = build_inversion_loss(LossLambdas(l2=1.0, lpips=0.0, moco=0.0), resolution=16, device="cpu")
    own = map_only_step(G, net, loss_fn, img, seg, w, refine_steps=2, weight=0.5)
    assert own["maponly/loss"] > 0.5 * own["maponly/last"] > 0
    assert {name: any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
            for name, m in [("image_encoder", net.image_encoder), ("seg_encoder", net.seg_encoder),
                            ("hyper_img", net.hyper_img), ("hyper_seg", net.hyper_seg)]} == \
        {"image_encoder": False, "seg_encoder": True, "hyper_img": False, "hyper_seg": True}

    # Through the command: logged, recorded in the config, refused when negative.
    bundle = new_bundle(tmp_path / "bundle", generator_file)
    save_network(bundle / "segmenter.safetensors", segmenter, kind="segmenter")
    result = train(scenes, bundle, "--steps", "2", "--seg-layers", "2", "--refine-steps", "1", "--eval-every", "0",
                   "--snapshot-every", "0", "--edit-layout-lambda", "0.5", "--edit-look-lambda", "0.1",
                   "--map-only-lambda", "0.25")
    assert result.exit_code == 0, result.output
    log = [r for r in read_log(run_folders(bundle)[0] / "log.jsonl") if "train/loss" in r]
    assert all(r["train/edit/ce"] > 0 and r["train/maponly/loss"] > 0 for r in log)
    assert all(r["train/loss"] > r["train/edit/loss"] + r["train/maponly/loss"] for r in log)
    command = load_network(bundle / "inversion.safetensors", "inversion").provenance["command"]
    assert "--edit-layout-lambda 0.5 --edit-look-lambda 0.1 --map-only-lambda 0.25" in command
    result = train(scenes, bundle, "--edit-layout-lambda", "-1", "--force")
    assert result.exit_code == 2 and "--edit-layout-lambda" in result.stderr  # a usage error, before any work
