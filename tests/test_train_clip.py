"""`bgedit train clip`: captioned data, zero-shot prompts and labels, training through the CLI (bundle file, log,
resume after Ctrl-C, errors)."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bgedit_cli import checkpoint
from bgedit_cli.cli.app import app as bgedit_app
from bgedit_cli.data import synth
from bgedit_cli.data.captions import CaptionDataset, content_prompts, factor_value, style_prompts, zero_shot_labels
from conftest import assert_clean_error

runner = CliRunner()

@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "scenes"
    result = runner.invoke(bgedit_app, ["data", "synth", "--out", str(out), "--num", "40", "--resolution", "16",
                                        "--mixing-pairs", "0", "--workers", "1"])
    assert result.exit_code == 0, result.output
    return out


def train(data: Path, bundle: Path, *extra: str):
    return runner.invoke(bgedit_app, ["train", "clip", "--data", str(data), "--model", str(bundle), "--preset", "tiny", "--quiet",
                               "--device", "cpu", *extra])


def read_log(bundle: Path) -> list[dict]:
    from bgedit_cli.training.common import read_log

    (run,) = sorted((bundle / "runs").glob("clip-*"))
    return read_log(run / "log.jsonl")


# ----------------------------------------------------------------------------------------------------------
# Data and zero-shot tasks.


def test_caption_dataset_pairs_captions_and_flips_by_seed(scenes):
    records = {json.loads(line)["file"]: json.loads(line) for line in (scenes / "metadata.jsonl").open()}
    data = CaptionDataset(scenes, "training", 16, flip=True, seed=3)
    assert len(data) == 36 and all(data[i]["caption"] == records[data.names[i]]["caption"] for i in range(len(data)))
    plain = CaptionDataset(scenes, "training", 16)
    for epoch in (0, 1, 0):
        data.set_epoch(epoch)
        flips = [not torch.equal(data[i]["img"], plain[i]["img"]) for i in range(len(data))]
        assert all(torch.equal(data[i]["img"], plain[i]["img"].flip(-1)) for i in range(len(data)) if flips[i])
        assert 0 < sum(flips) < len(data)
        if epoch == 0:
            first = flips
        else:
            assert flips != first  # another epoch, other flips
    data.set_epoch(0)
    assert flips == first and len(data.pixels) == 36  # decoded once, kept
    assert data[5]["img"].shape == (3, 16, 16) and float(data[5]["img"].abs().max()) <= 1


def test_zero_shot_prompts_name_every_word():
    prompts = style_prompts()
    assert set(prompts) == set(synth.STYLE_NAMES)
    assert "a foggy landscape" in prompts["fog"] and "a scene at night" in prompts["night"]
    for name, words in synth.STYLE_WORDS.items():
        text = " ".join(prompts[name])
        assert all(w in text for w in words), name
    water = content_prompts("water")
    assert list(water) == ["sea", "lake", "pond", "river", "none"] and "an ocean landscape" in water["sea"]
    assert "none" not in content_prompts("ground")  # every scene has ground


def test_factor_values_and_labels():
    content = {"water": "none", "ground": "sand", "buildings": "village", "forest": "none", "trees": 3,
               "road": False, "rocks": 0, "ridges": [{"kind": "hill"}, {"kind": "mountain"}]}
    values = {f: factor_value(content, f) for f in synth.CONTENT_WORDS}
    assert values == {"water": "none", "ground": "sand", "buildings": "village", "forest": "none", "trees": "trees",
                      "road": "none", "rocks": "none", "ridges": "mountain"}
    assert factor_value({"ridges": [{"kind": "hill"}]}, "ridges") == "hill"
    labels = zero_shot_labels([{"style": {"name": "night"}, "content": content}, {"caption": "no factors"}])
    assert labels["style"] == (list(synth.STYLE_NAMES), [2, None])
    assert labels["water"][1] == [4, None] and labels["ground"][1] == [3, None]
    assert zero_shot_labels([{"caption": "no factors"}]) == {}


# ----------------------------------------------------------------------------------------------------------
# Training through the CLI.


def test_train_clip_writes_model_and_log(scenes, tmp_path, monkeypatch):
    from bgedit_cli.nn.clip_model import ClipEncoder
    from bgedit_cli.training import clip

    trained = []
    real_snapshot = clip.ClipStage.snapshot_network
    monkeypatch.setattr(clip.ClipStage, "snapshot_network", lambda self: trained.append(self.net) or real_snapshot(self))
    bundle = tmp_path / "bundle"
    result = train(scenes, bundle, "--steps", "6", "--batch-size", "8", "--eval-every", "3", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["image_resolution"] == 32 and summary["zero_shot"]["style"]["chance"] == pytest.approx(1 / 6)

    # The bundle file rebuilds the network as it was in memory at the end.
    net = checkpoint.load_network(bundle / "clip.safetensors", "clip")
    assert net.cfg == trained[-1].cfg and net.cfg.image_resolution == 32 and net.cfg.context_length == 32
    assert net.provenance["steps"] == 6 and "--steps 6" in net.provenance["command"]
    assert net.provenance["val"] == summary["val"]
    loaded, live = ClipEncoder(net), ClipEncoder(trained[-1])
    texts = ["a foggy lake", "a village at night"]
    img = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(loaded.encode_text(texts), live.encode_text(texts))
    assert torch.equal(loaded.encode_image(img), live.encode_image(img))

    records = read_log(bundle)
    assert records[0]["zero_shot"]["water"]["classes"] == ["sea", "lake", "pond", "river", "none"]
    assert [r["step"] for r in records if "train/loss" in r] == list(range(1, 7))
    evals = [r for r in records if "val/loss" in r]
    assert [r["step"] for r in evals] == [3, 6]
    zs_keys = {"val/zs_style", *(f"val/zs_{f}" for f in synth.CONTENT_WORDS)}
    for r in evals:
        assert zs_keys <= set(r) and all(0 <= r[k] <= 1 for k in zs_keys) and r["val/loss"] > 0
    assert summary["val"] == {k.removeprefix("val/"): v for k, v in evals[-1].items() if k.startswith("val/")}
    assert records[-1]["event"] == "done"

    # Training again into the same bundle needs --force.
    again = train(scenes, bundle, "--steps", "1")
    assert again.exit_code == 1 and again.stderr.startswith("Error:") and "--force" in again.stderr


def test_train_clip_follows_the_generator_resolution(scenes, tmp_path):
    from bgedit_cli.nn.stylegan2 import Generator, GeneratorConfig

    bundle = tmp_path / "g"
    g = Generator(GeneratorConfig(img_resolution=16, z_dim=8, w_dim=8, mapping_layers=1, channels=(8, 8, 8)))
    checkpoint.save_network(bundle / "generator.safetensors", g, kind="generator")
    result = train(scenes, bundle, "--steps", "1", "--batch-size", "4", "--eval-every", "0")
    assert result.exit_code == 0, result.output
    assert checkpoint.load_network(bundle / "clip.safetensors", "clip").cfg.image_resolution == 16


def test_train_clip_resume_after_ctrl_c_is_exact(scenes, tmp_path, monkeypatch):
    from bgedit_cli.training import clip

    args = ("--steps", "6", "--batch-size", "8", "--eval-every", "0", "--seed", "5")
    straight = train(scenes, tmp_path / "a", *args)
    assert straight.exit_code == 0, straight.output

    # Ctrl-C (a real SIGINT) during step 3: the step finishes, the state is saved, exit 130.
    real_step = clip.ClipStage.train_step

    def step_with_ctrl_c(self, step, batches):
        if step == 2:
            signal.raise_signal(signal.SIGINT)
        return real_step(self, step, batches)

    with monkeypatch.context() as patch:
        patch.setattr(clip.ClipStage, "train_step", step_with_ctrl_c)
        cut = train(scenes, tmp_path / "b", *args)
    assert cut.exit_code == 130 and "Error: interrupted at step 3/6" in cut.stderr and "--resume" in cut.stderr
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored

    changed = train(scenes, tmp_path / "b", "--resume", "--lr", "0.01")
    assert changed.exit_code == 1 and "Error: --lr 0.01 differs from the resumed run's 0.001" in changed.stderr

    resumed = train(scenes, tmp_path / "b", "--resume")
    assert resumed.exit_code == 0, resumed.output
    a = checkpoint.read_checkpoint(tmp_path / "a" / "clip.safetensors", "clip").tensors
    b = checkpoint.read_checkpoint(tmp_path / "b" / "clip.safetensors", "clip").tensors
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in read_log(tmp_path / "b") if "train/loss" in r] == list(range(1, 7))


# ----------------------------------------------------------------------------------------------------------
# Errors: one `Error:` line, exit 1, nothing written.


def test_train_clip_errors(scenes, tmp_path):
    no_metadata = tmp_path / "no_metadata"
    shutil.copytree(scenes / "images", no_metadata / "images")
    missing = tmp_path / "missing_caption"
    shutil.copytree(scenes / "images", missing / "images")
    lines = (scenes / "metadata.jsonl").read_text().splitlines()
    (missing / "metadata.jsonl").write_text("\n".join(lines[1:]) + "\n")
    first = json.loads(lines[0])["file"]

    cases = [
        (train(tmp_path / "nowhere", tmp_path / "m"), "no such folder"),
        (train(no_metadata, tmp_path / "m"), "metadata.jsonl: no such file"),
        (train(missing, tmp_path / "m"), f"no caption for {missing / 'images' / 'training' / first}.png"),
        (train(scenes, tmp_path / "m", "--preset", "huge"), "--preset huge"),
        (train(scenes, tmp_path / "m", "--resume"), "no clip run"),
        (train(scenes, tmp_path / "m", "--batch-size", "100"), "fewer than one batch"),
    ]
    for result, message in cases:
        assert_clean_error(result, message)
    assert not (tmp_path / "m").exists()
