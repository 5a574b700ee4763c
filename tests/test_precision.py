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


def busy_workload(key: str, fp32_matmuls: int, bf16_matmuls: int, module: torch.nn.Module):
    """A workload whose CPU time per run depends on the precision it runs in (counted in `calls`)."""
    calls = []
    a = torch.randn(192, 192)

    def run():
        bf16 = torch.is_autocast_enabled("cpu")
        calls.append("bf16" if bf16 else "fp32")
        with torch.autocast("cpu", enabled=False):
            for _ in range(bf16_matmuls if bf16 else fp32_matmuls):
                a @ a

    return runtime.Workload(key, run, (module,)), calls


def test_auto_decides_per_workload_by_its_measured_time_and_caches_it(measured, tmp_path):
    """Fast bf16 convolutions are not enough: a command's own workload must run faster in bf16 (CPU time,
    each precision warmed up then timed once); the decision is cached per CPU, torch version and workload."""
    measured(supported=True, fp32_s=1.0, bf16_s=0.4)
    net = torch.nn.Linear(4, 4).requires_grad_(False)
    slow, calls = busy_workload("invert | tiny | batch 1", fp32_matmuls=2, bf16_matmuls=40, module=net)
    assert runtime.resolve_precision("auto", CPU, workload=slow) == "fp32"
    assert calls == ["fp32", "fp32", "bf16", "bf16"]
    fast, _ = busy_workload("invert | demo | batch 1", fp32_matmuls=40, bf16_matmuls=2, module=net)
    assert runtime.resolve_precision("auto", CPU, workload=fast) == "bf16"
    assert runtime.resolve_precision("auto", CPU) == "bf16"  # no workload (training): the convolution check
    # The probe left the network as it was: no gradients required, not marked for bf16.
    assert not any(p.requires_grad for p in net.parameters()) and not getattr(net, runtime.BF16_MARK)
    cached = json.loads((tmp_path / "cpu-bf16.json").read_text())
    assert cached["status"]["fast"] and set(cached["workloads"]) == {slow.key, fast.key}
    assert cached["workloads"][slow.key]["precision"] == "fp32"
    assert cached["workloads"][slow.key]["bf16_s"] > cached["workloads"][slow.key]["fp32_s"]
    assert runtime.workload_decisions() == cached["workloads"]
    calls.clear()
    assert runtime.resolve_precision("auto", CPU, workload=slow) == "fp32" and calls == []  # cached
    assert runtime.resolve_precision("fp32", CPU, workload=fast) == "fp32"


def test_doctor_shows_the_decision_per_command(cli, measured):
    measured(supported=True, fp32_s=1.0, bf16_s=0.4)
    net = torch.nn.Linear(4, 4)
    slow, _ = busy_workload("invert, mix, text-edit | tiny | batch 1", fp32_matmuls=2, bf16_matmuls=40, module=net)
    assert runtime.resolve_precision("auto", CPU, workload=slow) == "fp32"
    result = cli(["doctor", "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    by_command = json.loads(result.stdout)["system"]["auto_precision_by_command"]
    assert by_command["train (every stage)"] == "bf16"
    assert by_command[slow.key]["precision"] == "fp32" and by_command[slow.key]["bf16_s"] > 0
    table = cli(["doctor"])
    flat = "".join(c for c in table.stdout if not c.isspace() and c != "│")  # the table wraps long cells
    assert table.exit_code == 0 and "train(everystage):bf16" in flat and "tiny|batch1:fp32(measured" in flat


def test_system_report_is_plain_facts_with_the_auto_decision(measured, monkeypatch):
    measured(supported=True, fp32_s=1.0, bf16_s=0.4)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    s = runtime.system_report()
    assert s["torch"] == torch.__version__ and s["cuda_available"] is False and s["cuda_devices"] == []
    assert list(s["cpu_flags"]) == list(runtime.CPU_FLAGS) and s["mkldnn_bf16"] is True
    assert s["auto_precision_cpu"] == "bf16" and s["cpu_bf16"]["speedup"] == 2.5
    assert s["auto_precision_by_command"] == {"train (every stage)": "bf16"}
    json.dumps(s)  # plain values only


def test_auto_skips_the_probe_where_bf16_is_slow_or_overridden(measured, monkeypatch):
    net = torch.nn.Linear(4, 4)
    workload, calls = busy_workload("w", fp32_matmuls=40, bf16_matmuls=1, module=net)
    measured(supported=False)
    assert runtime.resolve_precision("auto", CPU, workload=workload) == "fp32" and calls == []
    monkeypatch.setenv(runtime.CPU_BF16_ENV, "1")
    assert runtime.resolve_precision("auto", CPU, workload=workload) == "bf16" and calls == []


def test_networks_prepared_for_bf16_run_in_bf16_in_the_pipelines():
    """`load_models(..., precision="bf16")` prepares the networks (`cache_casts`); `invert` and `render` then run
    them under bf16 autocast whoever calls them, and fp32 networks stay fp32."""
    from bgedit_cli.nn.inversion import build_inversion
    from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator
    from bgedit_cli.pipelines.invert import invert, render

    torch.manual_seed(0)
    g = Generator(GENERATOR_PRESETS["tiny"]).eval().requires_grad_(False)
    net = build_inversion("proposed", "tiny", g).eval().requires_grad_(False)
    img = torch.rand(1, 3, 16, 16) * 2 - 1
    seg = torch.zeros(1, 151, 16, 16)
    seg[:, 3] = 1
    ref = invert(g, net, img, seg, steps=1)
    assert ref.images.dtype == torch.float32
    runtime.cache_casts(g, net)
    out = invert(g, net, img, seg, steps=1)
    assert out.images.dtype == torch.bfloat16 and render(g, out.ws).dtype == torch.bfloat16
    assert psnr(out.images, ref.images) > 30


def test_the_inversion_and_generator_workloads_run_in_both_precisions():
    from bgedit_cli.nn.inversion import build_inversion
    from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator
    from bgedit_cli.pipelines.precision import generator_workload, inversion_workload

    torch.manual_seed(0)
    g = Generator(GENERATOR_PRESETS["tiny"]).eval()
    for variant in ("proposed", "baseline"):
        net = build_inversion(variant, "tiny", g).eval()
        workload = inversion_workload(g, net)
        assert workload.key.startswith(f"invert, mix, text-edit | tiny {variant} 16px ")
        assert workload.key.endswith("batch 1")
        for precision in ("fp32", "bf16"):
            with torch.no_grad(), runtime.autocast(CPU, precision):
                workload.run()
    assert inversion_workload(g, net).key == workload.key  # sizes, not weights or objects, name it
    with torch.no_grad():
        generator_workload(g).run()


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
