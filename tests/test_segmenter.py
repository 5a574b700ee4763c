"""Segmenter: network shapes, segmentation metrics, `bgedit train segmenter` (training, resume, errors)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bgedit_cli.cli.app import app
from bgedit_cli.metrics.segmentation import (class_iou, confusion_matrix, mean_class_accuracy, mean_iou,
                                             pixel_accuracy, segmentation_scores)
from bgedit_cli.nn.segmenter import PRESETS, Segmenter, SegmenterConfig, segmenter_preset

runner = CliRunner()


# ----------------------------------------------------------------------------------------------------------
# A tiny ADE20K-layout folder: sky (3) over grass (10) at a random horizon, sometimes a building (2).


def make_scenes(root: Path, num_train: int = 48, num_val: int = 8, resolution: int = 32, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = {3: (90, 160, 230), 10: (60, 150, 50), 2: (140, 110, 100)}
    for split, n in (("training", num_train), ("validation", num_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            seg = np.full((resolution, resolution), 3, np.uint8)
            seg[rng.integers(resolution // 3, 2 * resolution // 3):] = 10
            if rng.random() < 0.5:
                x0, w = rng.integers(0, resolution // 2), rng.integers(4, resolution // 2)
                seg[resolution // 4: resolution // 2 + 4, x0:x0 + w] = 2
            rgb = np.zeros((resolution, resolution, 3), np.float32)
            for cls, colour in colours.items():
                rgb[seg == cls] = colour
            rgb += rng.normal(0, 12, rgb.shape)
            name = f"ADE_{split[:5]}_{i:04d}"
            Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(root / "images" / split / f"{name}.png")
            Image.fromarray(seg, mode="L").save(root / "annotations" / split / f"{name}.png")
    return root


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return make_scenes(tmp_path_factory.mktemp("scenes"))


def train(data: Path, bundle: Path, *extra: str):
    args = ["train", "segmenter", "--data", str(data), "--model", str(bundle), "--preset", "tiny", "--quiet",
            "--device", "cpu", *extra]
    return runner.invoke(app, args)


def run_folders(bundle: Path) -> list[Path]:
    return sorted((bundle / "runs").glob("segmenter-*"))


# ----------------------------------------------------------------------------------------------------------
# Network.


@pytest.mark.parametrize("preset, size", [("tiny", 32), ("demo", 64), ("paper-256", 64)])
def test_segmenter_shapes(preset, size):
    torch.manual_seed(0)
    net = Segmenter(segmenter_preset(preset)).eval()
    img = torch.rand(2, 3, size, size) * 2 - 1
    logits = net(img)
    assert logits.shape == (2, 151, size, size) and logits.dtype == torch.float32
    pred = net.predict(img, batch_size=1)
    assert pred.shape == (2, size, size) and pred.dtype == torch.int64
    assert torch.equal(pred, logits.argmax(1))
    assert int(pred.min()) >= 0 and int(pred.max()) <= 150


def test_segmenter_presets_and_config_errors():
    from bgedit_cli.errors import ConfigError

    assert [PRESETS[p].resolution for p in ("tiny", "demo", "paper-256")] == [32, 64, 256]
    assert max(PRESETS["tiny"].channels) <= 16
    with pytest.raises(ConfigError, match="unknown segmenter preset"):
        segmenter_preset("huge")
    with pytest.raises(ConfigError, match="multiple of the total downsampling"):
        SegmenterConfig(resolution=36, channels=(8, 16, 32, 32))
    with pytest.raises(ConfigError, match="num_groups"):
        SegmenterConfig(resolution=32, channels=(12, 16), num_groups=8)
    with pytest.raises(ValueError, match="multiples of 2"):
        Segmenter(PRESETS["tiny"])(torch.zeros(1, 3, 31, 31))
    cfg = PRESETS["paper-256"]
    assert SegmenterConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_segmenter_checkpoint_round_trip(tmp_path):
    from bgedit_cli.checkpoint import load_network, save_network

    torch.manual_seed(1)
    net = Segmenter(PRESETS["tiny"]).eval()
    save_network(tmp_path / "segmenter.safetensors", net, kind="segmenter", provenance={"steps": 0})
    loaded = load_network(tmp_path / "segmenter.safetensors", "segmenter")
    img = torch.rand(1, 3, 32, 32) * 2 - 1
    assert loaded.cfg == net.cfg
    assert torch.equal(loaded(img), net(img))


def test_segmenter_batchnorm_variant_trains_a_step():
    net = Segmenter(SegmenterConfig(resolution=16, channels=(4, 8), num_convs=1, norm="batch"))
    loss = net(torch.randn(2, 3, 16, 16)).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


# ----------------------------------------------------------------------------------------------------------
# Metrics: closed forms.


def test_metrics_perfect_prediction():
    target = torch.randint(0, 151, (2, 16, 16))
    cm = confusion_matrix(target, target)
    assert cm.shape == (151, 151) and int(cm.sum()) == 2 * 16 * 16
    scores = segmentation_scores(cm)
    assert scores["pixel_acc"] == 1.0 and scores["miou"] == 1.0 and scores["mean_acc"] == 1.0
    assert scores["num_classes_present"] == len(target.unique())


def test_metrics_known_confusion_matrix():
    # Classes 0, 1, 2 (of 4): rows = truth, columns = prediction.
    cm = torch.tensor([[3, 1, 0, 0],
                       [2, 4, 0, 0],
                       [0, 0, 0, 0],
                       [0, 0, 0, 0]])
    assert pixel_accuracy(cm) == pytest.approx(7 / 10)
    iou = class_iou(cm)
    assert iou[0].item() == pytest.approx(3 / 6) and iou[1].item() == pytest.approx(4 / 7)
    assert iou[2:].isnan().all()  # absent from labels and predictions: not counted
    assert mean_iou(cm) == pytest.approx((3 / 6 + 4 / 7) / 2)
    assert mean_class_accuracy(cm) == pytest.approx((3 / 4 + 4 / 6) / 2)
    # A class that is only predicted counts, with IoU 0.
    cm2 = torch.tensor([[2, 0, 2], [0, 0, 0], [0, 0, 0]])
    assert mean_iou(cm2) == pytest.approx((2 / 4 + 0) / 2)


def test_metrics_from_pixels_and_ignore():
    target = torch.tensor([[0, 0, 1, 1], [1, 255, 255, 2]])
    pred = torch.tensor([[0, 1, 1, 1], [1, 2, 0, 2]])
    cm = confusion_matrix(pred, target, num_classes=3)
    assert cm.tolist() == [[1, 1, 0], [0, 3, 0], [0, 0, 1]]  # the two ignored pixels are gone
    assert pixel_accuracy(cm) == pytest.approx(5 / 6)
    assert mean_iou(cm) == pytest.approx((1 / 2 + 3 / 4 + 1) / 3)
    # Batches add up.
    assert torch.equal(confusion_matrix(pred[:1], target[:1], 3) + confusion_matrix(pred[1:], target[1:], 3), cm)
    with pytest.raises(ValueError, match="class ids"):
        confusion_matrix(torch.tensor([3]), torch.tensor([0]), num_classes=3)
    assert np.isnan(pixel_accuracy(confusion_matrix(pred, torch.full_like(target, 255), 3)))


# ----------------------------------------------------------------------------------------------------------
# Data order and schedule.


def test_epoch_batches_resume_and_ranks():
    from bgedit_cli.training.common import Dist, EpochBatchSampler

    full = list(EpochBatchSampler(10, 4, seed=3, epoch=1))
    assert len(full) == 2 and sorted(sum(full, [])) != list(range(8))  # shuffled, last partial batch dropped
    assert list(EpochBatchSampler(10, 4, seed=3, epoch=1, start=1)) == full[1:]
    assert list(EpochBatchSampler(10, 4, seed=3, epoch=2)) != full
    shares = [list(EpochBatchSampler(10, 4, seed=3, epoch=1, d=Dist(rank=r, world_size=2))) for r in range(2)]
    assert [a + b for a, b in zip(*shares)] == full


def test_decoded_cache_matches_dataset(scenes):
    from bgedit_cli.data.ade20k import ADE20KDataset
    from bgedit_cli.training.segmenter import DecodedCache, resolution_divisor

    data = ADE20KDataset(scenes, "training", resolution=32, flip=True, seed=3)
    cache = DecodedCache(data)
    for epoch in (0, 1, 0):
        data.set_epoch(epoch)
        cache.set_epoch(epoch)
        for i in range(6):
            a, b = data[i], cache[i]
            assert torch.equal(a["img"], b["img"]) and torch.equal(a["seg"], b["seg"]) and a["name"] == b["name"]
    assert len(cache.items) == 6
    assert [resolution_divisor(s, 8, 0.5) for s in range(8)] == [4, 4, 2, 2, 1, 1, 1, 1]


def test_lr_schedule():
    from bgedit_cli.training.common import warmup_cosine_lr
    from bgedit_cli.training.configs import SegmenterTrainConfig

    schedule = SegmenterTrainConfig.for_preset("demo").lr_schedule()
    lrs = [warmup_cosine_lr(s, 100, 1.0, **schedule) for s in range(100)]
    assert lrs[0] == pytest.approx(0.2) and lrs[4] == pytest.approx(1.0)  # 5 warm-up steps
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:])) and lrs[-1] < 1e-3


def test_degrade_is_seeded_bounded_and_off_at_zero():
    from bgedit_cli.metrics.pairwise import psnr
    from bgedit_cli.training.segmenter import degrade

    torch.manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(64, 3, 68, 68), 5, stride=1)  # smooth, like renders
    img = (smooth * 2 - 1).clamp(-1, 1)
    assert torch.equal(degrade(img, 0.0, torch.Generator().manual_seed(1)), img)
    a = degrade(img, 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(a, degrade(img, 1.0, torch.Generator().manual_seed(1)))  # the generator decides everything
    assert not torch.equal(a, degrade(img, 1.0, torch.Generator().manual_seed(2)))
    assert a.shape == img.shape and a.min() >= -1 and a.max() <= 1
    changed = (a - img).flatten(1).abs().amax(1) > 1e-6
    assert 0.8 < changed.float().mean() < 1.0  # each kind at 1/2: about 1/16 of the images get none
    db = psnr(a[changed], img[changed])
    assert db.min() > 15 and db.median() < 40  # visible, not destroyed
    some = degrade(img, 0.25, torch.Generator().manual_seed(3))
    assert ((some - img).flatten(1).abs().amax(1) > 1e-6).float().mean() < 0.5


def test_class_weights():
    from bgedit_cli.training.segmenter import class_weights

    maps = [{"seg": torch.tensor([[1, 1, 1, 2], [255, 1, 1, 1]])}]  # f_1 = 6/7, f_2 = 1/7, classes 0 and 3 absent
    freq = torch.tensor([0, 6 / 7, 1 / 7, 0])
    w = class_weights(maps, 4, 0.5)
    assert float((w * freq).sum()) == pytest.approx(1.0)  # the average labelled pixel weighs 1
    assert float(w[2] / w[1]) == pytest.approx(6 ** 0.5, rel=1e-5)
    assert float(w[0]) == float(w[3]) == pytest.approx(float(w[1]) * (6 / 7 / 1e-3) ** 0.5, rel=1e-5)
    assert torch.allclose(class_weights(maps, 4, 0.0), torch.ones(4))


# ----------------------------------------------------------------------------------------------------------
# Training through the CLI.


def test_train_segmenter_writes_model_and_log(scenes, tmp_path):
    from bgedit_cli.checkpoint import load_network
    from bgedit_cli.training.common import read_log

    bundle = tmp_path / "bundle"
    result = train(scenes, bundle, "--steps", "40", "--batch-size", "8", "--lr", "0.01", "--eval-every", "20",
                   "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    net = load_network(bundle / "segmenter.safetensors", "segmenter")
    assert net.cfg == PRESETS["tiny"]
    prov = net.provenance
    assert prov["steps"] == 40 and prov["preset"] == "tiny" and "--steps 40" in prov["command"]
    assert prov["val"] == summary["val"] and 0 <= prov["val"]["miou"] <= 1

    (run,) = run_folders(bundle)
    records = read_log(run / "log.jsonl")
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    evals = [r for r in records if "val/miou" in r]
    assert len(losses) == 40 and [r["step"] for r in evals] == [20, 40]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])  # the loss falls
    assert evals[-1]["val/pixel_acc"] > 0.6  # sky / grass / building are told apart
    assert (run / "state.safetensors").is_file() and (run / "snapshots" / "segmenter-000040.safetensors").is_file()
    assert [int(x) for x in net.predict(torch.zeros(1, 3, 32, 32)).unique()] != []

    # Training again into the same bundle needs --force.
    again = train(scenes, bundle, "--steps", "2")
    assert again.exit_code == 1 and "Error:" in again.stderr and "--force" in again.stderr


def test_train_segmenter_progressive_resizing(scenes, tmp_path):
    from bgedit_cli.training.common import read_log

    result = train(scenes, tmp_path / "p", "--steps", "4", "--batch-size", "4", "--progressive", "0.5",
                   "--eval-every", "0")
    assert result.exit_code == 0, result.output
    (run,) = run_folders(tmp_path / "p")
    records = [r for r in read_log(run / "log.jsonl") if "train/loss" in r]
    assert [r["resolution"] for r in records] == [8, 16, 32, 32]
    assert [r["epoch"] for r in records] == [1, 1, 1, 1]  # 16 + 4 + 1 + 1 batches of 4; 12 per epoch
    assert "--progressive 0.5" in read_log(run / "log.jsonl")[0]["command"]


def test_train_segmenter_resume_after_ctrl_c_is_exact(scenes, tmp_path, monkeypatch):
    from bgedit_cli.checkpoint import read_checkpoint
    from bgedit_cli.training import common

    args = ("--steps", "8", "--batch-size", "8", "--eval-every", "0", "--seed", "5", "--progressive", "0.75",
            "--degrade", "0.5")
    straight = train(scenes, tmp_path / "a", *args)
    assert straight.exit_code == 0, straight.output

    # Ctrl-C (a real SIGINT) during step 4: the step finishes, the state is saved, exit 130.
    real_update = common.TrainProgress.update
    calls = []

    def interrupting_update(self, *a, **k):
        calls.append(1)
        if len(calls) == 4:
            os.kill(os.getpid(), signal.SIGINT)
        return real_update(self, *a, **k)

    monkeypatch.setattr(common.TrainProgress, "update", interrupting_update)
    cut = train(scenes, tmp_path / "b", *args)
    monkeypatch.setattr(common.TrainProgress, "update", real_update)
    assert cut.exit_code == 130 and "Error: interrupted at step 4/8" in cut.stderr and "--resume" in cut.stderr
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored

    changed = train(scenes, tmp_path / "b", "--resume", "--batch-size", "4")
    assert changed.exit_code == 1 and "Error: --batch-size 4 differs from the resumed run's 8" in changed.stderr

    resumed = train(scenes, tmp_path / "b", "--resume", "--steps", "8")
    assert resumed.exit_code == 0, resumed.output
    assert len(run_folders(tmp_path / "b")) == 1
    a = read_checkpoint(tmp_path / "a" / "segmenter.safetensors", "segmenter").tensors
    b = read_checkpoint(tmp_path / "b" / "segmenter.safetensors", "segmenter").tensors
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [r["step"] for r in common.read_log(run_folders(tmp_path / "b")[0] / "log.jsonl") if "train/loss" in r]
    assert steps == list(range(1, 9))


# ----------------------------------------------------------------------------------------------------------
# Errors: one `Error:` line, exit 1.


def test_train_segmenter_errors(scenes, tmp_path):
    cases = [
        (train(tmp_path / "nowhere", tmp_path / "m"), "no such folder"),
        (train(scenes, tmp_path / "m", "--preset", "huge"), "unknown segmenter preset"),
        (train(scenes, tmp_path / "m", "--resume"), "no segmenter run"),
        (train(scenes, tmp_path / "m", "--batch-size", "100"), "fewer than one batch"),
    ]
    empty = tmp_path / "empty"
    (empty / "images" / "training").mkdir(parents=True)
    (empty / "annotations" / "training").mkdir(parents=True)
    (empty / "images" / "validation").mkdir(parents=True)
    cases.append((train(empty, tmp_path / "m"), "no images"))
    for result, message in cases:
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], result.stderr
    assert not (tmp_path / "m").exists()  # nothing written on bad input


@pytest.mark.slow
def test_train_segmenter_ddp_two_processes(scenes, tmp_path):
    """torchrun with 2 CPU processes (gloo): one run folder, one log, a loadable model (about 20 s)."""
    import subprocess
    import sys

    from bgedit_cli.checkpoint import load_network
    from bgedit_cli.training.common import read_log

    bundle = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "bgedit_cli",
           "train", "segmenter", "--data", str(scenes), "--model", str(bundle), "--preset", "tiny", "--steps", "6",
           "--batch-size", "8", "--progressive", "0.5", "--device", "cpu", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = run_folders(bundle)
    records = read_log(run / "log.jsonl")
    assert records[0]["world_size"] == 2 and [r["step"] for r in records if "train/loss" in r] == list(range(1, 7))
    assert load_network(bundle / "segmenter.safetensors", "segmenter").provenance["steps"] == 6
