"""`bgedit train generator`: a short run writes a usable generator; resume is exact; torchrun ranks agree."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bgedit_cli.checkpoint import load_network, read_checkpoint
from bgedit_cli.training import common
from bgedit_cli.training.configs import GeneratorTrainConfig
from bgedit_cli.training.gan import GeneratorPass, ema_beta, lazy_adam, mixing_cutoff, state_hash
from bgedit_cli.training.generator import RANK_HASH_ENV
from conftest import REPO, assert_clean_error


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """16 training scenes at 16 px from the real synthetic renderer."""
    from bgedit_cli.data.synth import synthesize

    out = tmp_path_factory.mktemp("synth16")
    synthesize(out, num=18, resolution=16, seed=0, mixing_pairs=0, workers=1, force=True)
    return out


def train(cli, data: Path, bundle: Path, *extra):
    return cli(["train", "generator", "--data", data, "--model", bundle, "--preset", "tiny", "--device", "cpu",
                "--quiet", *extra])


def run_dirs(bundle: Path) -> list[Path]:
    return sorted((bundle / "runs").glob("generator-*"))


def load_state_file(bundle: Path) -> dict:
    from bgedit_cli.training.state import load_state

    (run,) = run_dirs(bundle)
    return load_state(run / "state.safetensors")


# ----------------------------------------------------------------------------------------------------------
# A short run.


def test_train_writes_a_generator_that_generate_uses(cli, scenes, tmp_path):
    bundle = tmp_path / "bundle"
    result = train(cli, scenes, bundle, "--steps", "4", "--snapshot-every", "2", "--batch-size", "8")
    assert result.exit_code == 0, (result.output, result.exception)

    g = load_network(bundle / "generator.safetensors", "generator")
    assert g.cfg.img_resolution == 16 and g.cfg.channels == (32, 32, 16)
    assert g.w_avg.abs().sum() > 0  # tracked during training, kept for truncation
    prov = g.provenance
    assert prov["steps"] == 4 and prov["preset"] == "tiny" and prov["kimg"] == pytest.approx(0.032)
    assert prov["data"] == str(scenes.resolve()) and prov["command"].startswith("bgedit train generator")
    assert set(prov["swd"]) == {"swd/16", "swd/avg"} and prov["swd"]["swd/avg"] > 0
    assert prov["fid"].startswith("skipped: Inception weights not found in")

    (run,) = run_dirs(bundle)
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == ["generator-000002.safetensors",
                                                                     "generator-000004.safetensors"]
    assert {"reals.png", "fakes-000002.png", "fakes-000004.png"} <= {p.name for p in (run / "samples").iterdir()}
    from PIL import Image

    assert Image.open(run / "samples" / "fakes-000004.png").size == (4 * 16, 2 * 16)  # tiny grid: 4 x 2
    log = common.read_log(run / "log.jsonl")
    steps = [r["step"] for r in log if "loss/G" in r]
    assert steps == [1, 2, 3, 4]
    assert all(math.isfinite(r["loss/D"]) and math.isfinite(r["loss/G"]) for r in log if "loss/G" in r)
    assert "reg/r1" in log[1] and "reg/pl" in log[1]  # lazy regularization runs at step 0
    snaps = [r for r in log if r.get("event") == "snapshot"]
    assert [r["step"] for r in snaps] == [2, 4] and all("swd/16" in r and "minutes" in r for r in snaps)
    assert (run / "state.safetensors").is_file()

    # The EMA generator in the bundle is the last snapshot.
    last = read_checkpoint(run / "snapshots" / "generator-000004.safetensors", "generator").tensors
    final = read_checkpoint(bundle / "generator.safetensors", "generator").tensors
    assert all(torch.equal(last[k], final[k]) for k in final)

    out = tmp_path / "gen"
    gen = cli(["generate", bundle / "generator.safetensors", "--seeds", "0-3", "--out", out, "--quiet"])
    assert gen.exit_code == 0, gen.output
    assert sorted(p.name for p in out.iterdir()) == [f"{i:06d}.png" for i in range(4)]
    assert Image.open(out / "000000.png").size == (16, 16)

    # Training again into the same bundle needs --force (refused before any work).
    again = train(cli, scenes, bundle, "--steps", "2")
    assert_clean_error(again, "--force")


def test_resume_after_ctrl_c_matches_a_straight_run(cli, scenes, tmp_path, monkeypatch):
    # diffaug + style mixing + noise + R1 (step 0, 16) + path length (every 4 steps) all draw random numbers;
    # 16 images / batch 8 = 2 batches per epoch, so the cut falls mid-epoch.
    args = ("--steps", "6", "--batch-size", "8", "--augment", "diffaug", "--seed", "3", "--snapshot-every", "100")
    straight = train(cli, scenes, tmp_path / "a", *args)
    assert straight.exit_code == 0, (straight.output, straight.exception)

    real_update = common.TrainProgress.update
    calls = []

    def interrupting_update(self, *a, **k):  # a real SIGINT during step 3
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real_update(self, *a, **k)

    monkeypatch.setattr(common.TrainProgress, "update", interrupting_update)
    cut = train(cli, scenes, tmp_path / "b", *args)
    monkeypatch.setattr(common.TrainProgress, "update", real_update)
    assert cut.exit_code == 130, (cut.output, cut.exception)
    assert "Error: interrupted at step 3/6" in cut.stderr and "--resume" in cut.stderr
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert load_state_file(tmp_path / "b")["step"] == 3

    changed = train(cli, scenes, tmp_path / "b", "--resume", "--batch-size", "4")
    assert_clean_error(changed, "batch_size (saved 8)")

    resumed = train(cli, scenes, tmp_path / "b", "--resume", "--steps", "6")
    assert resumed.exit_code == 0, (resumed.output, resumed.exception)
    assert len(run_dirs(tmp_path / "b")) == 1
    a, b = load_state_file(tmp_path / "a"), load_state_file(tmp_path / "b")
    assert a["step"] == b["step"] == 6 and a["data"] == b["data"]
    for net in ("G", "D", "G_ema"):
        assert a[net].keys() == b[net].keys()
        diff = max((a[net][k].float() - b[net][k].float()).abs().max().item() for k in a[net])
        assert diff <= 1e-6, (net, diff)
    assert float(a["pl_mean"]) == pytest.approx(float(b["pl_mean"]), abs=1e-7)
    ga = read_checkpoint(tmp_path / "a" / "generator.safetensors", "generator").tensors
    gb = read_checkpoint(tmp_path / "b" / "generator.safetensors", "generator").tensors
    assert max((ga[k] - gb[k]).abs().max().item() for k in ga) <= 1e-6
    log = common.read_log(run_dirs(tmp_path / "b")[0] / "log.jsonl")
    assert [r["step"] for r in log if "loss/G" in r] == list(range(1, 7))
    # --resume without --snapshot-every keeps the run's own cadence (not a tenth of --steps).
    assert [r["snapshot_every"] for r in log if r.get("event") in ("start", "resume")] == [100, 100]


def test_resume_may_change_the_ema_half_life(cli, scenes, tmp_path):
    args = ("--batch-size", "8", "--seed", "1", "--snapshot-every", "100")
    straight = train(cli, scenes, tmp_path / "a", "--steps", "4", *args)
    assert straight.exit_code == 0, (straight.output, straight.exception)
    assert train(cli, scenes, tmp_path / "b", "--steps", "2", *args).exit_code == 0
    assert_clean_error(train(cli, scenes, tmp_path / "b", "--resume", "--r1-gamma", "1"), "r1_gamma (saved 0.01)")

    resumed = train(cli, scenes, tmp_path / "b", "--resume", "--steps", "4", "--ema-kimg", "0.001")
    assert resumed.exit_code == 0, (resumed.output, resumed.exception)
    a, b = load_state_file(tmp_path / "a"), load_state_file(tmp_path / "b")
    assert a["settings"]["ema_kimg"] == 0.1 and b["settings"]["ema_kimg"] == 0.001
    # G and D follow the same course; only the average differs (0.001 kimg is below the ramp-up's 1.2 images).
    for net in ("G", "D"):
        assert max((a[net][k].float() - b[net][k].float()).abs().max().item() for k in a[net]) <= 1e-6, net
    assert max((a["G_ema"][k].float() - b["G_ema"][k].float()).abs().max().item() for k in a["G_ema"]) > 1e-6


def test_resume_may_lower_the_learning_rate(cli, scenes, tmp_path):
    from bgedit_cli.training.gan import lazy_ratio

    bundle = tmp_path / "b"
    assert train(cli, scenes, bundle, "--steps", "2", "--batch-size", "8", "--snapshot-every", "100").exit_code == 0
    resumed = train(cli, scenes, bundle, "--resume", "--steps", "3", "--lr", "0.0005")
    assert resumed.exit_code == 0, (resumed.output, resumed.exception)
    state = load_state_file(bundle)
    assert state["settings"]["g_lr"] == state["settings"]["d_lr"] == 0.0005
    # The optimizers run at the new rate (with the tiny preset's lazy corrections: path length every 4, R1 every
    # 16 steps), not at the one saved with their moments.
    assert [g["lr"] for g in state["opt_G"]["param_groups"]] == pytest.approx([0.0005 * lazy_ratio(4)])
    assert [g["lr"] for g in state["opt_D"]["param_groups"]] == pytest.approx([0.0005 * lazy_ratio(16)])
    log = common.read_log(run_dirs(bundle)[0] / "log.jsonl")
    commands = [r["command"] for r in log if r.get("event") in ("start", "resume")]
    assert len(commands) == 2 and "--lr 0.002 " in commands[0] and "--lr 0.0005 " in commands[1]


def test_half_then_resume_equals_straight_with_ada(cli, scenes, tmp_path):
    args = ("--batch-size", "8", "--augment", "ada", "--seed", "1", "--snapshot-every", "2")
    assert train(cli, scenes, tmp_path / "a", "--steps", "8", *args).exit_code == 0
    assert train(cli, scenes, tmp_path / "b", "--steps", "4", *args).exit_code == 0
    resumed = train(cli, scenes, tmp_path / "b", "--resume", "--steps", "8")
    assert resumed.exit_code == 0, (resumed.output, resumed.exception)
    a, b = load_state_file(tmp_path / "a"), load_state_file(tmp_path / "b")
    assert a["ada"]["p"] > 0 and a["ada"] == b["ada"]  # p moved (ADA adjusts every 4 steps) and resumed exactly
    for net in ("G", "D", "G_ema"):
        assert max((a[net][k] - b[net][k]).abs().max().item() for k in a[net]) <= 1e-6, net


# ----------------------------------------------------------------------------------------------------------
# Several processes.


def test_torchrun_two_gloo_ranks_hold_identical_weights(scenes, tmp_path):
    hashes = tmp_path / "hashes"
    env = {**os.environ, RANK_HASH_ENV: str(hashes), "OMP_NUM_THREADS": "1", "BGEDIT_DEBUG": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "bgedit_cli", "train", "generator", "--data", str(scenes), "--model", str(tmp_path / "bundle"),
           "--preset", "tiny", "--device", "cpu", "--steps", "5", "--batch-size", "8", "--snapshot-every", "2",
           "--quiet"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((hashes / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2 and r0["step"] == r1["step"] == 5
    for net in ("G", "D", "G_ema"):
        assert r0[net] == r1[net], net
    # The file rank 0 wrote is the EMA generator both ranks hold.
    g = load_network(tmp_path / "bundle" / "generator.safetensors", "generator")
    assert state_hash(g) == r0["G_ema"]
    (run,) = run_dirs(tmp_path / "bundle")
    log = common.read_log(run / "log.jsonl")
    assert log[0]["world_size"] == 2 and [r["step"] for r in log if "loss/G" in r] == [1, 2, 3, 4, 5]
    assert g.provenance["command"].startswith("torchrun --nproc_per_node 2")


# ----------------------------------------------------------------------------------------------------------
# Mixed precision (CUDA only) and errors.


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cuda(cli, scenes, tmp_path, precision):
    result = train(cli, scenes, tmp_path / "b", "--steps", "3", "--device", "cuda", "--precision", precision)
    assert result.exit_code == 0, (result.output, result.exception)
    (run,) = run_dirs(tmp_path / "b")
    log = common.read_log(run / "log.jsonl")
    assert log[0]["precision"] == precision
    assert all(math.isfinite(r["loss/G"]) for r in log if "loss/G" in r)


def test_errors_are_one_line(cli, scenes, tmp_path):
    assert_clean_error(train(cli, scenes, tmp_path / "b", "--precision", "fp16"), "--precision fp16 is for CUDA")
    assert_clean_error(train(cli, scenes, tmp_path / "b", "--steps", "2", "--kimg", "1"), "--steps or --kimg")
    assert_clean_error(train(cli, scenes, tmp_path / "b", "--augment", "mixup"), "--augment mixup")
    assert_clean_error(train(cli, scenes, tmp_path / "b", "--preset", "huge"), "--preset huge")
    assert_clean_error(train(cli, scenes, tmp_path / "none", "--resume"), "no generator run")
    assert_clean_error(train(cli, scenes, tmp_path / "b", "--batch-size", "64"), "fewer than one batch")
    assert_clean_error(train(cli, tmp_path / "missing", tmp_path / "b"), "no such folder")
    assert not (tmp_path / "b" / "generator.safetensors").exists()


# ----------------------------------------------------------------------------------------------------------
# Pieces of the recipe.


def test_preset_defaults_and_kimg():
    cfg = GeneratorTrainConfig.for_preset("tiny", batch_size=None, r1_gamma=0.5)
    assert cfg.batch_size == 8 and cfg.r1_gamma == 0.5 and cfg.r1_interval == 16 and cfg.style_mixing_prob == 0.9
    assert GeneratorTrainConfig.from_dict(cfg.to_dict()) == cfg
    assert GeneratorTrainConfig.for_preset("paper-256").r1_gamma == 10.0


def test_lazy_adam_corrections():
    p = [torch.nn.Parameter(torch.zeros(2))]
    group = lazy_adam(p, 0.002, 16).param_groups[0]
    c = 16 / 17
    assert group["lr"] == pytest.approx(0.002 * c) and group["betas"] == pytest.approx((0.0, 0.99**c))
    assert lazy_adam(p, 0.002, None).param_groups[0]["betas"] == (0.0, 0.99)


def test_ema_half_life_and_rampup():
    cfg = GeneratorTrainConfig.for_preset("demo", batch_size=16).replace(ema_kimg=10.0, ema_rampup=None)
    # After ema_kimg thousand images the old weights count half.
    assert ema_beta(cfg, 10**6) ** (10_000 / 16) == pytest.approx(0.5)
    ramp = cfg.replace(ema_rampup=0.05)
    assert ema_beta(ramp, 1600) == pytest.approx(0.5 ** (16 / 80))  # half-life min(10k, 0.05 * 1600 = 80) images


def test_style_mixing_cutoff_range():
    torch.manual_seed(0)
    cuts = [mixing_cutoff(6, 0.9) for _ in range(400)]
    assert set(cuts) == {1, 2, 3, 4, 5, 6}
    assert 0.05 < cuts.count(6) / 400 < 0.2  # 10% unmixed
    assert {mixing_cutoff(6, 0.0) for _ in range(20)} == {6}


def test_generator_pass_mixes_the_rows_after_the_cutoff():
    from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator

    g = Generator(GENERATOR_PRESETS["tiny"])
    z, z_mix = torch.randn(2, 32), torch.randn(2, 32)
    img, ws, w = GeneratorPass(g)(z, z_mix, 3)
    assert img.shape == (2, 3, 16, 16) and ws.shape == (2, 6, 32)
    assert torch.equal(ws[:, 0], w) and torch.equal(ws[:, 2], w)
    assert torch.allclose(ws[:, 3], g.mapping(z_mix)) and torch.allclose(ws[:, 5], g.mapping(z_mix))


def test_diff_augment_is_differentiable_and_p0_is_identity():
    from bgedit_cli.training.augment import AdaptiveP, diff_augment

    x = torch.rand(4, 3, 16, 16, requires_grad=True) * 2 - 1
    torch.manual_seed(0)
    y = diff_augment(x)
    assert y.shape == x.shape and not torch.equal(y, x)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert g.abs().sum() > 0
    assert diff_augment(x, p=0.0) is x
    cut = diff_augment(torch.ones(2, 3, 16, 16), "cutout")
    holes = (cut == 0).float().mean(dim=[1, 2, 3])
    assert ((holes > 0) & (holes <= 0.25)).all()  # an 8x8 hole, smaller where it crosses the border

    ada = AdaptiveP(target=0.6, speed_kimg=1.0, interval=2)
    for step in range(4):  # D is confident on reals (sign +1 > 0.6): p goes up by 8 images / 1000 per adjust
        ada.accumulate(torch.ones(4))
        ada.adjust(step)
    assert ada.p == pytest.approx(0.016) and ada.rt == 1.0
    for step in range(4, 8):
        ada.accumulate(-torch.ones(4))
        ada.adjust(step)
    assert ada.p == pytest.approx(0.0)


# ----------------------------------------------------------------------------------------------------------
# Widths and warm starts.


def test_channels_and_init_from_warm_start_g_and_g_ema(cli, scenes, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    result = train(cli, scenes, first, "--steps", "2", "--channels", "32,32,24")
    assert result.exit_code == 0, (result.output, result.exception)
    g = load_network(first / "generator.safetensors", "generator")
    assert g.cfg.channels == (32, 32, 24) and "--channels 32,32,24" in g.provenance["command"]

    # Another network: refused, naming both.
    assert_clean_error(train(cli, scenes, second, "--steps", "2", "--init-from", first / "generator.safetensors"),
                       "--init-from", "widths 32,32,24", "widths 32,32,16")

    # Same network: step 0 of the new run is the file's weights (G and G_ema), D is fresh.
    import bgedit_cli.training.gan as gen

    seen = {}
    real_step = gen.StyleGAN2Trainer.step

    def spy(self, real, step):
        if step == 0:
            seen["G"], seen["G_ema"] = state_hash(self.G), state_hash(self.G_ema)
        return real_step(self, real, step)

    gen.StyleGAN2Trainer.step = spy
    try:
        result = train(cli, scenes, second, "--steps", "2", "--channels", "32,32,24",
                       "--init-from", first / "generator.safetensors")
    finally:
        gen.StyleGAN2Trainer.step = real_step
    assert result.exit_code == 0, (result.output, result.exception)
    assert seen["G"] == seen["G_ema"] == state_hash(g)
    prov = read_checkpoint(second / "generator.safetensors").provenance
    assert prov["init_from"]["file"] == str((first / "generator.safetensors").resolve())
    # --resume keeps the record.
    assert train(cli, scenes, second, "--resume", "--steps", "3").exit_code == 0
    assert read_checkpoint(second / "generator.safetensors").provenance["init_from"] == prov["init_from"]


@pytest.mark.parametrize("widths, fragment", [("32,32", "3 values"), ("32,x", "comma-separated integers"),
                                              ("32,0,16", "positive widths")])
def test_bad_channels_are_clean_errors(cli, scenes, tmp_path, widths, fragment):
    assert_clean_error(train(cli, scenes, tmp_path / "b", "--steps", "2", "--channels", widths), "--channels",
                       fragment)


def test_init_from_a_narrower_generator_widens_it_without_changing_its_images(cli, scenes, tmp_path):
    from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator
    from bgedit_cli.training.gan import widen_into

    small_cfg = GENERATOR_PRESETS["tiny"]  # widths 32, 32, 16
    torch.manual_seed(0)
    small = Generator(small_cfg).eval()
    for p in small.parameters():  # trained-looking weights: nothing left at its initial value
        p.data.add_(torch.randn_like(p) * 0.3)
    big = Generator(small_cfg.replace(channels=(48, 32, 40))).eval()
    widen_into(big, small)
    z = torch.randn(3, small_cfg.z_dim)
    with torch.no_grad():
        assert torch.allclose(big(z, noise_mode="const"), small(z, noise_mode="const"), atol=1e-5)
        assert big.synthesis.convs[4].weight[:16, 16:].abs().sum() == 0  # new inputs into old outputs
        assert big.synthesis.convs[4].weight[16:].abs().sum() > 0  # new outputs: fresh weights

    # Through the command: a narrower file is widened; a wider or deeper one is refused.
    first = tmp_path / "first"
    assert train(cli, scenes, first, "--steps", "2").exit_code == 0
    result = train(cli, scenes, tmp_path / "wide", "--steps", "2", "--channels", "32,48,24",
                   "--init-from", first / "generator.safetensors")
    assert result.exit_code == 0, (result.output, result.exception)
    assert_clean_error(train(cli, scenes, tmp_path / "narrow", "--steps", "2", "--channels", "32,16,16",
                             "--init-from", first / "generator.safetensors"), "--init-from", "wider --channels")
