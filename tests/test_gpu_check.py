"""scripts/gpu_check.sh, the prepared GPU check: its dry run on the CPU at tiny sizes passes and writes the JSON
and the log (marked slow: about 20 s of CPU time, 3.6 min wall on the 2-core development machine while a training
ran beside it), and its pieces (argument errors, the images/s of a run log, the generator parity) in seconds."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO


def load_gpu_check():
    """scripts/gpu_check.py as a module (it puts scripts/ first on sys.path for its imports; put back after)."""
    saved = list(sys.path)
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


def peer_checkout() -> Path | None:
    for cand in filter(None, [os.environ.get("BGEDIT_PEER_ROSINALITY"), "/tmp/rosinality"]):
        if (Path(cand) / "model.py").is_file():
            return Path(cand)
    return None


@pytest.mark.slow
def test_dry_run_on_the_cpu_passes_and_records_every_step(tmp_path):
    peer = peer_checkout()
    cmd = ["bash", str(REPO / "scripts" / "gpu_check.sh"), "--out", str(tmp_path / "check"), "--cpu"]
    cmd += ["--peer-rosinality", str(peer)] if peer else []
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    record = json.loads((tmp_path / "check" / "gpu_check.json").read_text())
    log = (tmp_path / "check" / "gpu_check.log").read_text()
    assert record["ok"] is True and record["mode"].startswith("cpu")
    assert set(record["steps"]) == {"pytest", "parity", "train", "bench"}
    assert all(step["ok"] for step in record["steps"].values())
    assert "skipped" in record["steps"]["pytest"]["summary"]  # the CUDA tests, on a machine without CUDA
    stages = record["steps"]["train"]["stages"]
    assert list(stages) == ["generator", "segmenter", "inversion", "clip", "text"]
    for name, stage in stages.items():
        assert stage["ok"] and stage["images_per_s"] > 0 and stage["peak_mem_mib"] > 0, (name, stage)
    rows = record["steps"]["bench"]["rows"]
    assert {(r["bench"], r["precision"]) for r in rows} >= {("generator-forward", "fp32"), ("invert", "fp32")}
    assert all(r["sec_per_image"] > 0 for r in rows)
    if peer is None:
        assert record["steps"]["bench"]["peer"] == {"skipped": "peer row skipped: no checkout"}
        assert "peer row skipped: no checkout" in log
    else:
        assert any(r["impl"] == "rosinality (peer)" and "plain" in r["peer_ops"] for r in rows)
    assert "== train: ok" in log and record["machine"]["torch"] == torch.__version__


def test_argument_errors(tmp_path, capsys):
    gpu_check = load_gpu_check()
    with pytest.raises(SystemExit) as exc:
        gpu_check.main(["--out", str(tmp_path), "--cpu", "--only", "parity,nothing"])
    assert exc.value.code == 2 and "unknown step(s) nothing" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as exc:
            gpu_check.main(["--out", str(tmp_path)])
        assert exc.value.code == 2 and "--cpu" in capsys.readouterr().err


def test_images_per_second_from_a_run_log():
    gpu_check = load_gpu_check()
    log = [{"event": "start", "step": 0, "precision": "bf16", "settings": {"batch_size": 8}},
           {"epoch": 0, "step": 1, "time": 5.0}, {"epoch": 0, "step": 2, "time": 6.0},
           {"epoch": 0, "step": 3, "time": 6.5}, {"epoch": 0, "step": 4, "time": 7.0},
           {"event": "eval", "step": 4, "time": 9.0}, {"event": "done", "step": 4, "time": 9.5}]
    # The steps after the first two: 2 steps of 8 images in 1 s (the first step's warm-up left out).
    assert gpu_check.step_rate(log) == {"batch_size": 8, "precision": "bf16", "steps_logged": 4,
                                        "images_per_s": 16.0}


def test_parity_step_on_the_cpu(tmp_path):
    gpu_check = load_gpu_check()
    args = gpu_check.argparse.Namespace(out=tmp_path, cpu=True, train_steps=None, budget_min=8.0,
                                        peer_rosinality=None, peer_build_s=1)
    result = gpu_check.parity(gpu_check.Check(args))
    fp32, bf16 = result["rows"]
    assert result["ok"] and fp32["max_abs_diff"] == 0.0 and fp32["pass"]
    assert 0 < bf16["mean_abs_diff"] and bf16["psnr_db"] > 30 and bf16["pass"]
