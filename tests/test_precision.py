"""`--precision auto|fp32|bf16`: the run-time decision on CPU (mocked capability, not mocked math) and how close
bf16 autocast stays to fp32."""

from __future__ import annotations

import json
import math

import pytest
import torch

from bgedit_cli import runtime
from conftest import assert_clean_error

CPU = torch.device("cpu")


@pytest.fixture
def measured(monkeypatch, tmp_path):
    """The real decision path (no env override), with the capability and the timings mocked."""
    monkeypatch.delenv(runtime.CPU_BF16_ENV, raising=False)
    monkeypatch.setenv("BGEDIT_HOME", str(tmp_path))
    monkeypatch.setattr(runtime, "_cpu_bf16", None)
    monkeypatch.setattr(runtime, "_warned", set())

    def setup(supported: bool, fp32_s: float = 1.0, bf16_s: float = 1.0):
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: supported)
        monkeypatch.setattr(runtime, "_conv_speed", lambda dtype, reps=5: bf16_s if dtype is not None else fp32_s)

    return setup


def test_auto_is_fp32_where_the_cpu_has_no_fast_bf16(measured, tmp_path):
    measured(supported=False)
    assert runtime.resolve_precision("auto", CPU) == "fp32"
    measured(supported=True, fp32_s=1.0, bf16_s=0.9)  # has the instructions, but only 1.1x faster
    runtime._cpu_bf16 = None
    (tmp_path / "cpu-bf16.json").unlink()
    assert runtime.resolve_precision("auto", CPU) == "fp32"
    assert runtime.cpu_bf16_status()["speedup"] == pytest.approx(1.111, abs=1e-3)


def test_auto_is_bf16_where_measured_fast_and_the_result_is_cached(measured, tmp_path, monkeypatch):
    measured(supported=True, fp32_s=1.0, bf16_s=0.4)
    assert runtime.resolve_precision("auto", CPU) == "bf16"
    cached = json.loads((tmp_path / "cpu-bf16.json").read_text())
    assert cached["status"] == {"fast": True, "supported": True, "speedup": 2.5}
    assert runtime.cpu_model() in cached["key"] and torch.__version__ in cached["key"]
    runtime._cpu_bf16 = None  # a new process reads the cache instead of measuring again
    monkeypatch.setattr(runtime, "_conv_speed", lambda *a, **k: pytest.fail("measured twice"))
    assert runtime.cpu_bf16_status()["source"].startswith("cached in")
    monkeypatch.setenv(runtime.CPU_BF16_ENV, "0")  # the override wins
    assert runtime.resolve_precision("auto", CPU) == "fp32"


def test_bf16_on_a_slow_cpu_runs_and_warns_once(measured, capsys):
    measured(supported=False)
    assert runtime.resolve_precision("bf16", CPU) == "bf16"
    assert runtime.resolve_precision("bf16", CPU) == "bf16"
    err = capsys.readouterr().err
    assert err.count("Warning: bf16 on this CPU is slow") == 1 and "auto would use fp32" in err
    with pytest.raises(Exception, match="fp16 is for CUDA"):
        runtime.resolve_precision("fp16", CPU)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(4 / max((a.float() - b.float()).square().mean().item(), 1e-12))


@pytest.mark.parametrize("preset,bound", [("tiny", 38.0), ("demo", 38.0)])
def test_bf16_generator_output_stays_close_to_fp32(preset, bound):
    """Styles, mapping and demodulation stay fp32 under autocast; only the convolutions run in bf16."""
    from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator

    torch.manual_seed(0)
    G = Generator(GENERATOR_PRESETS[preset]).eval()
    z = torch.randn(2, G.cfg.z_dim)
    with torch.no_grad():
        ref = G(z, truncation_psi=0.7)
        with runtime.autocast(CPU, "bf16"):
            out = G(z, truncation_psi=0.7)
    assert out.dtype == torch.bfloat16
    assert psnr(out, ref) >= bound


def test_cli_generate_takes_precision(cli, tmp_path):
    from bgedit_cli.checkpoint import save_network
    from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator
    from PIL import Image
    import numpy as np

    torch.manual_seed(0)
    save_network(tmp_path / "g.safetensors", Generator(GENERATOR_PRESETS["tiny"]), kind="generator")
    outs = {}
    for prec in ("fp32", "bf16"):
        res = cli(["generate", tmp_path / "g.safetensors", "--seeds", "0-1", "--out", tmp_path / prec, "--quiet",
                   "--precision", prec])
        assert res.exit_code == 0, (res.output, res.exception)
        outs[prec] = np.stack([np.asarray(Image.open(tmp_path / prec / f"{i:06d}.png")) for i in range(2)])
    diff = np.abs(outs["fp32"].astype(int) - outs["bf16"].astype(int))
    assert 0 < diff.max() <= 16  # bf16 ran (not identical) and stays close
    assert_clean_error(cli(["generate", tmp_path / "g.safetensors", "--seeds", "0", "--out", tmp_path / "x",
                            "--precision", "fp8"]), "--precision fp8")


def test_training_resumes_across_precisions(cli, tmp_path):
    """Weights stay fp32 under autocast: a run started in fp32 continues in bf16 (and logs which it used)."""
    from bgedit_cli.data.synth import synthesize
    from bgedit_cli.training.common import read_log

    data = tmp_path / "data"
    synthesize(data, num=18, resolution=16, seed=0, mixing_pairs=0, workers=1, force=True)
    args = ["train", "segmenter", "--data", data, "--model", tmp_path / "b", "--preset", "tiny", "--quiet",
            "--device", "cpu", "--batch-size", "4", "--eval-every", "0"]
    assert cli([*args, "--steps", "2", "--precision", "fp32"]).exit_code == 0
    res = cli([*args, "--steps", "4", "--resume", "--precision", "bf16"])
    assert res.exit_code == 0, (res.output, res.exception)
    (run,) = (tmp_path / "b" / "runs").glob("segmenter-*")
    log = read_log(run / "log.jsonl")
    assert [r["precision"] for r in log if r.get("event") in ("start", "resume")] == ["fp32", "bf16"]
    assert [r["step"] for r in log if "train/loss" in r] == [1, 2, 3, 4]
