"""The GPU check: one short run of what needs a GPU, for the few minutes a GPU machine is lent.

    bash scripts/gpu_check.sh --out DIR [--peer-rosinality CHECKOUT]   # on a CUDA machine, after `make setup`
    bash scripts/gpu_check.sh --out DIR --cpu                          # the same steps on the CPU at tiny sizes

Steps, each timed, with its outcome in DIR/gpu_check.json and its output in DIR/gpu_check.log:

  pytest  `pytest -m gpu` (the CUDA tests; with --cpu tests/test_gpu.py alone, which then skips)
  parity  the generator on the device against the CPU in fp32, weight deltas included: fp32 (impl ref, and
          compile on CUDA) and bf16 autocast; max and mean abs difference, PSNR
  train   a few steps of every stage (generator, segmenter, inversion, clip, text) at paper-256 (tiny with
          --cpu) on synthetic scenes, with random auxiliary weights in their publishers' formats (torchvision's
          AlexNet, MoCo v2's release dict, OpenAI's CLIP): images/s over the steps after the first two, and peak
          memory (the CUDA allocator's; with --cpu the process's peak RSS so far)
  bench   generator forward and inversion rows on the device (scripts/benchmarks' timers, bench.py's row
          fields) and, with --peer-rosinality, rosinality/stylegan2-pytorch's generator on the same weights: its
          compiled CUDA ops where nvcc and ninja build them within --peer-build-s, else its plain-PyTorch path
          (the row's `peer_ops` says which, and why)

It is meant to fit in 8 minutes on one GPU: no step starts after --budget-min (it is recorded as skipped).
Exit code 0 when every step that ran passed. docs/benchmarks.md ("GPU check") says where its figures go.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

STAGES = ("generator", "segmenter", "inversion", "clip", "text")
PROMPTS = "snow,night"
FP32_TOL = 1e-3  # max abs difference to the CPU in fp32, relative to the image's max abs (tests/test_gpu.py: 1e-3)
BF16_TOL = 0.05  # RMS difference of bf16 to the CPU's fp32, relative to the image's RMS


class Check:
    """The run: options, sizes, the log, the JSON record and the time budget."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = args.out.resolve()
        self.work = self.out / "work"
        self.cpu = args.cpu
        self.device = torch.device("cpu" if args.cpu else "cuda")
        self.preset = "tiny" if args.cpu else "paper-256"
        self.resolution = 16 if args.cpu else 256
        self.scenes = 40 if args.cpu else 300  # CLIP's paper-256 batch is 256 training scenes
        self.train_steps = args.train_steps or (3 if args.cpu else 8)
        self.batches = (1, 2) if args.cpu else (1, 8)
        self.repeats = 1 if args.cpu else 10
        self.t0 = time.time()
        self.log_file = open(self.out / "gpu_check.log", "w")
        self.record: dict[str, Any] = {"started": datetime.datetime.now().isoformat(timespec="seconds"),
                                       "mode": "cpu (dry run, tiny sizes)" if args.cpu else "cuda",
                                       "command": " ".join(sys.argv), "steps": {}}

    def log(self, text: str) -> None:
        for line in str(text).rstrip("\n").splitlines() or [""]:
            stamped = f"[{time.time() - self.t0:7.1f}s] {line}"
            print(stamped, flush=True)
            self.log_file.write(stamped + "\n")
        self.log_file.flush()

    def over_budget(self) -> bool:
        return time.time() - self.t0 > self.args.budget_min * 60

    def step(self, name: str, fn: Callable[[], dict[str, Any]]) -> None:
        """Run one step: its result (with `ok`), or the exception's traceback; skipped past the budget."""
        if self.over_budget():
            self.record["steps"][name] = {"ok": None, "skipped": f"over the {self.args.budget_min} min budget"}
            self.log(f"== {name}: skipped (over the time budget)")
            return
        self.log(f"== {name}")
        t = time.time()
        try:
            result = fn()
        except Exception:  # noqa: BLE001 - a failed step is recorded and the others still run
            result = {"ok": False, "error": traceback.format_exc()[-3000:]}
            self.log(result["error"])
        result["seconds"] = round(time.time() - t, 1)
        self.record["steps"][name] = result
        self.log(f"== {name}: {'ok' if result['ok'] else 'FAILED'} ({result['seconds']} s)")
        self.save()

    def save(self) -> None:
        self.record["seconds"] = round(time.time() - self.t0, 1)
        ran = [s for s in self.record["steps"].values() if s["ok"] is not None]
        self.record["ok"] = bool(ran) and all(s["ok"] for s in ran)
        (self.out / "gpu_check.json").write_text(json.dumps(self.record, indent=2, default=str) + "\n")

    def peak_memory(self) -> float:
        """MiB: the CUDA allocator's peak since `reset_peak`, or the process's peak RSS so far on the CPU."""
        if self.device.type == "cuda":
            return round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    def reset_peak(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)


# ----------------------------------------------------------------------------------------------------------
# The machine.


def machine(check: Check) -> dict[str, Any]:
    from bench import machine as bench_machine

    info = bench_machine()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(cuda_runtime=torch.version.cuda, cuda_capability=f"{props.major}.{props.minor}",
                    cuda_memory_gib=round(props.total_memory / 2**30, 1), cuda_devices=torch.cuda.device_count())
    nvcc = shutil.which("nvcc") or (Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "nvcc")
    info["nvcc"] = str(nvcc) if Path(nvcc).is_file() else None
    info["ninja"] = shutil.which("ninja")
    return info


# ----------------------------------------------------------------------------------------------------------
# pytest -m gpu.


def run_pytest(check: Check) -> dict[str, Any]:
    targets = ["tests/test_gpu.py"] if check.cpu else ["tests"]
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", *targets]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    check.log(proc.stdout[-6000:] + proc.stderr[-2000:])
    summary = (proc.stdout.strip().splitlines() or [""])[-1]
    return {"ok": proc.returncode == 0, "returncode": proc.returncode, "summary": summary, "command": " ".join(cmd)}


# ----------------------------------------------------------------------------------------------------------
# Generator parity, device against the CPU.


@torch.no_grad()
def parity(check: Check) -> dict[str, Any]:
    from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator

    cfg = GENERATOR_PRESETS[check.preset]
    torch.manual_seed(0)
    ref_g = Generator(cfg).eval()
    for conv in ref_g.synthesis.convs:
        conv.noise_strength.fill_(0.2)  # the noise path counts too
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2, cfg.z_dim, generator=gen)
    deltas = {k: 0.1 * torch.randn(2, *s, generator=gen) for k, s in ref_g.layer_shapes().items()}
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # fp32 against fp32
    try:
        return _parity_rows(check, cfg, ref_g, z, deltas)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


@torch.no_grad()
def _parity_rows(check: Check, cfg, ref_g, z: torch.Tensor, deltas: dict[str, torch.Tensor]) -> dict[str, Any]:
    from bgedit_cli.nn.stylegan2 import Generator
    from bgedit_cli.runtime import autocast, cache_casts

    reference = ref_g(z, weight_deltas=deltas)  # CPU, fp32
    scale_max, scale_rms = float(reference.abs().max()), float(reference.square().mean().sqrt())
    runs = [("ref", "fp32"), ("ref", "bf16")] + ([("compile", "fp32")] if check.device.type == "cuda" else [])
    rows, ok = [], True
    for impl, precision in runs:
        g = Generator(cfg, impl=impl).eval()
        g.load_state_dict(ref_g.state_dict())
        g = g.to(check.device)
        if precision == "bf16":
            cache_casts(g)
        t = time.time()
        with autocast(check.device, precision):
            out = g(z.to(check.device), weight_deltas={k: v.to(check.device) for k, v in deltas.items()})
        out = out.float().cpu()
        diff = out - reference
        mse = float(diff.square().mean())
        row = {"impl": impl, "precision": precision, "device": str(check.device),
               "max_abs_diff": float(diff.abs().max()), "mean_abs_diff": float(diff.abs().mean()),
               "psnr_db": round(10 * math.log10(4 / mse), 2) if mse > 0 else float("inf"),
               "seconds_first_call": round(time.time() - t, 2)}
        if precision == "fp32":
            row["pass"] = row["max_abs_diff"] <= FP32_TOL * max(1.0, scale_max)
        else:
            row["pass"] = math.sqrt(mse) <= BF16_TOL * scale_rms
        ok &= row["pass"]
        rows.append(row)
        check.log(json.dumps(row))
        del g
    return {"ok": ok, "preset": check.preset, "batch": 2, "image_max_abs": scale_max, "image_rms": scale_rms,
            "tolerances": {"fp32_max_abs_over_image_max_abs": FP32_TOL, "bf16_rms_over_image_rms": BF16_TOL},
            "rows": rows}


# ----------------------------------------------------------------------------------------------------------
# Random auxiliary weights in their publishers' formats.


def write_weights(check: Check) -> dict[str, Path]:
    """AlexNet (torchvision's state dict: the `features.*` LPIPS reads; the classifier, 230 MB it never reads, is
    left out), MoCo v2 (the release's dict: `module.encoder_q.*` ResNet-50 with the MLP head) and OpenAI's CLIP
    (`ViT-B-32.pt` as a state dict in fp16, which `clip.load` takes; tiny sizes with --cpu), all random, into
    WORK/home/weights/ where the commands look them up."""
    import torchvision

    from bgedit_cli.losses.lpips import build_lpips
    from bgedit_cli.losses.moco import build_moco
    from bgedit_cli.nn.clip_model import ClipModel, clip_config, load_openai_clip
    from bgedit_cli.weights import ALEXNET, CLIP_VIT_B32, MOCO

    folder = check.work / "home" / "weights"
    (folder / "clip").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    paths = {"alexnet": folder / ALEXNET.names[0], "moco": folder / MOCO.names[0],
             "clip": folder / CLIP_VIT_B32.names[0]}
    alexnet = torchvision.models.alexnet().state_dict()
    torch.save({k: v for k, v in alexnet.items() if k.startswith("features.")}, paths["alexnet"])
    resnet = torchvision.models.resnet50().state_dict()
    state = {"module.encoder_q." + k: v for k, v in resnet.items() if not k.startswith("fc.")}
    state.update({"module.encoder_q.fc.0.weight": 0.02 * torch.randn(2048, 2048),
                  "module.encoder_q.fc.0.bias": torch.zeros(2048),
                  "module.encoder_q.fc.2.weight": 0.02 * torch.randn(128, 2048),
                  "module.encoder_q.fc.2.bias": torch.zeros(128)})
    torch.save({"epoch": 800, "arch": "resnet50", "state_dict": state, "optimizer": {}}, paths["moco"])
    clip = ClipModel(clip_config("tiny" if check.cpu else "vit-b-32"))
    torch.save({k: v.half() for k, v in clip.state_dict().items()}, paths["clip"])
    # Each file through the loader that the stages use.
    build_lpips(paths["alexnet"], device=check.device)
    build_moco(paths["moco"], device=check.device)
    load_openai_clip(paths["clip"], device=check.device)
    return paths


# ----------------------------------------------------------------------------------------------------------
# Training steps of every stage.


def stage_args(check: Check, stage: str, weights: dict[str, Path]) -> list[str]:
    common = ["train", stage, "--data", check.work / "data", "--model", check.work / "bundle", "--preset",
              check.preset, "--steps", check.train_steps, "--device", check.device.type, "--snapshot-every", 0,
              "--quiet"]
    extra = {
        "generator": [],
        "segmenter": ["--eval-every", 0],
        # paper-256: LPIPS-Alex and MoCo (HyperStyle's lambdas) and MoCo for the text edits' similarity; tiny
        # (--cpu): the weight-free losses (ResNet-50 features are minutes on a CPU; `write_weights` loads the files)
        "inversion": ["--eval-every", 0, "--eval-images", 4]
        + ([] if check.cpu else ["--alexnet", weights["alexnet"], "--moco", weights["moco"]]),
        "clip": ["--eval-every", 0],
        "text": ["--eval-every", 0, "--clip", weights["clip"], "--prompts", PROMPTS, "--num-latents", 16]
        + ([] if check.cpu else ["--moco", weights["moco"]]),
    }[stage]
    return [str(a) for a in common + extra]


def step_rate(log: list[dict[str, Any]]) -> dict[str, Any]:
    """images/s over the steps after the first two (warm-up: allocator, cuDNN's algorithm search), from the run
    log's per-step wall times."""
    start = next(r for r in log if r.get("event") in ("start", "resume"))
    batch = start["settings"]["batch_size"]
    steps = [r for r in log if "epoch" in r and "event" not in r]  # one record per training step
    out: dict[str, Any] = {"batch_size": batch, "precision": start.get("precision"), "steps_logged": len(steps)}
    if len(steps) >= 3:
        first, last = steps[1], steps[-1]
        out["images_per_s"] = round(batch * (last["step"] - first["step"]) / (last["time"] - first["time"]), 2)
    return out


def train(check: Check) -> dict[str, Any]:
    from typer.testing import CliRunner

    from bgedit_cli.cli.app import app
    from bgedit_cli.data.synth import synthesize
    from bgedit_cli.training.common import read_log

    os.environ["BGEDIT_HOME"] = str(check.work / "home")  # the random weights, nothing else
    os.environ["TORCH_HOME"] = str(check.work / "torch")
    t = time.time()
    synthesize(check.work / "data", num=check.scenes, resolution=check.resolution, seed=0, val_fraction=0.1,
               mixing_pairs=0, workers=min(16, os.cpu_count() or 1), force=True)
    data_s = time.time() - t
    weights = write_weights(check)
    check.log(f"{check.scenes} scenes at {check.resolution} px in {data_s:.1f} s; weights: "
              + ", ".join(f"{k} {p.stat().st_size / 2**20:.0f} MiB" for k, p in weights.items()))
    runner, stages, ok = CliRunner(), {}, True
    for stage in STAGES:
        if check.over_budget():
            stages[stage] = {"ok": None, "skipped": "over the time budget"}
            continue
        check.reset_peak()
        t = time.time()
        args = stage_args(check, stage, weights)
        result = runner.invoke(app, args)
        row: dict[str, Any] = {"ok": result.exit_code == 0, "seconds": round(time.time() - t, 1),
                               "peak_mem_mib": check.peak_memory(), "command": "bgedit " + " ".join(args)}
        runs = sorted((check.work / "bundle" / "runs").glob(f"{stage}-*/log.jsonl"))
        if result.exit_code == 0 and runs:
            row.update(step_rate(read_log(runs[-1])))
        else:
            row["error"] = (result.stderr or "")[-2000:]
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                row["error"] += "".join(traceback.format_exception(result.exception))[-3000:]
        ok &= row["ok"]
        stages[stage] = row
        check.log(f"{stage}: {json.dumps(row)}")
    return {"ok": ok, "preset": check.preset, "scenes": check.scenes, "steps": check.train_steps,
            "peak_mem": "CUDA allocator peak" if check.device.type == "cuda" else "process peak RSS so far",
            "stages": stages}


# ----------------------------------------------------------------------------------------------------------
# Bench rows on the device, and the rosinality peer.


def bench(check: Check) -> dict[str, Any]:
    from benchmarks.generator import generator_gflop, time_forward
    from benchmarks.invert import STEPS, build_nets, invert_gflop, time_invert
    from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator
    from bgedit_cli.runtime import autocast, cache_casts

    dev, preset, rows = check.device, check.preset, []
    cfg = GENERATOR_PRESETS[preset]
    impls = [("ref", "fp32"), ("ref", "bf16")] + ([("compile", "fp32")] if dev.type == "cuda" else [])
    for impl, precision in impls:
        torch.manual_seed(0)
        g = Generator(cfg, impl=impl).eval().requires_grad_(False).to(dev)
        if precision == "bf16":
            cache_casts(g)
        for batch in check.batches:
            check.reset_peak()
            with autocast(dev, precision):
                m = time_forward(g, batch, dev, check.repeats)
            rows.append({"bench": "generator-forward", "preset": preset, "device": dev.type, "impl": impl,
                         "precision": precision, "batch": batch, "repeats": check.repeats,
                         "sec_per_image": round(m["best"], 5), "median_sec_per_image": round(m["median"], 5),
                         "peak_mem_mib": round(m["peak"], 1), "gflop_per_image": round(generator_gflop(cfg), 2),
                         "achieved_gflops": round(generator_gflop(cfg) / m["best"], 1)})
            check.log(json.dumps(rows[-1]))
        del g
    work = None
    for precision in ("fp32", "bf16"):
        g, net = build_nets(preset, dev, precision)
        if work is None:  # counted once, in fp32 (the FLOP counter cannot follow bf16-prepared weights)
            work = invert_gflop(g, net, dev)
        for batch in check.batches:
            check.reset_peak()
            with autocast(dev, precision):
                m = time_invert(g, net, batch, dev, check.repeats)
            rows.append({"bench": "invert", "preset": preset, "device": dev.type, "batch": batch,
                         "precision": precision, "steps": STEPS, "repeats": check.repeats,
                         "sec_per_image": round(m["best"], 5), "median_sec_per_image": round(m["median"], 5),
                         "peak_mem_mib": round(m["peak"], 1), "gflop_per_image": round(work, 2),
                         "achieved_gflops": round(work / m["best"], 1)})
            check.log(json.dumps(rows[-1]))
        del g, net
    peer = peer_rows(check)
    return {"ok": peer.get("ok", True), "rows": rows + peer.pop("rows", []), "peer": peer}


def build_compiled_peer_ops(check: Check, checkout: Path) -> str | None:
    """Compile rosinality's CUDA ops (fused_bias_act, upfirdn2d) in a child process, bounded by --peer-build-s
    and cached in WORK/torch_extensions, and run each once; None when they work, else why not."""
    if check.device.type != "cuda":
        return "--cpu: no CUDA ops to compile"
    info = check.record.get("machine", {})
    if not info.get("nvcc"):
        return "no nvcc (CUDA toolkit) on this machine"
    if not info.get("ninja"):
        return "no ninja on PATH (torch's JIT extension builder needs it)"
    code = (f"import sys, torch; sys.path.insert(0, {str(SCRIPTS)!r}); from benchmarks.peer import load_rosinality; "
            f"m = load_rosinality({str(checkout)!r}, compile_ops=True); x = torch.randn(1, 4, 8, 8, device='cuda'); "
            "m.upfirdn2d(x, torch.ones(2, 2, device='cuda') / 4, up=2, pad=(1, 0)); "
            "m.fused_leaky_relu(x, torch.zeros(4, device='cuda')); torch.cuda.synchronize(); print('built')")
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(check.work / "torch_extensions")}
    try:
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=check.args.peer_build_s)
    except subprocess.TimeoutExpired:
        return f"compiling took longer than --peer-build-s {check.args.peer_build_s}"
    check.log(proc.stdout[-2000:] + proc.stderr[-4000:])
    if proc.returncode != 0 or "built" not in proc.stdout:
        return "compiling or running them failed: " + " ".join(proc.stderr.strip().splitlines()[-3:])[-600:]
    os.environ["TORCH_EXTENSIONS_DIR"] = env["TORCH_EXTENSIONS_DIR"]  # the build is reused in this process
    return None


@torch.no_grad()
def peer_rows(check: Check) -> dict[str, Any]:
    """Our paper-256 generator (ref, fp32) and rosinality's on the same weights, timed alike on the device,
    after a parity check there (bench.py's PEER_PARITY_TOL)."""
    checkout = check.args.peer_rosinality
    if checkout is None:
        check.log("peer row skipped: no checkout (give --peer-rosinality DIR, a checkout of "
                  "rosinality/stylegan2-pytorch)")
        return {"skipped": "peer row skipped: no checkout"}
    from benchmarks.generator import PEER_PARITY_TOL, time_forward
    from benchmarks.peer import PeerForward, check_checkout, peer_generator
    from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator

    checkout = check_checkout(checkout)
    why_plain = build_compiled_peer_ops(check, checkout)
    ops = "plain PyTorch (rosinality's CPU code paths)" if why_plain else "compiled CUDA ops (fused_bias_act, upfirdn2d)"
    check.log(f"peer ops: {ops}" + (f" ({why_plain})" if why_plain else ""))
    dev = check.device
    torch.manual_seed(0)
    ours = Generator(GENERATOR_PRESETS["paper-256"]).eval().requires_grad_(False)
    peer = peer_generator(checkout, ours, compile_ops=why_plain is None).to(dev)
    ours = ours.to(dev)
    z = torch.randn(2, ours.cfg.z_dim, generator=torch.Generator().manual_seed(0)).to(dev)
    diff = float((ours(z, noise_mode="const") - peer([z], randomize_noise=False)[0]).abs().max())
    rows = []
    if diff > PEER_PARITY_TOL:
        return {"ok": False, "peer_ops": ops, "parity_max_abs_diff": diff, "rows": rows,
                "error": f"the peer's images differ from ours by {diff:.2e} > {PEER_PARITY_TOL}"}
    repeats = check.repeats if dev.type == "cuda" else 1
    for batch in check.batches[:1] if dev.type == "cpu" else check.batches:
        for name, model in (("ours ref", ours), ("rosinality (peer)", PeerForward(peer, ours.cfg))):
            check.reset_peak()
            m = time_forward(model, batch, dev, repeats)
            rows.append({"bench": "generator-forward", "preset": "paper-256", "device": dev.type, "impl": name,
                         "precision": "fp32", "batch": batch, "repeats": repeats, "sec_per_image": round(m["best"], 5),
                         "median_sec_per_image": round(m["median"], 5), "peak_mem_mib": round(m["peak"], 1),
                         **({"peer_ops": ops, "parity_max_abs_diff": float(f"{diff:.2e}")} if "peer" in name else {})})
            check.log(json.dumps(rows[-1]))
        rows[-1]["ours_over_peer"] = round(rows[-2]["sec_per_image"] / rows[-1]["sec_per_image"], 2)
    return {"ok": True, "peer_ops": ops, "why_not_compiled": why_plain, "parity_max_abs_diff": diff, "rows": rows}


# ----------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json, gpu_check.log and work/")
    ap.add_argument("--cpu", action="store_true", help="dry run on the CPU at tiny sizes (no CUDA needed)")
    ap.add_argument("--peer-rosinality", type=Path, metavar="DIR", help="a checkout of rosinality/stylegan2-pytorch "
                    "for the bench's peer row")
    ap.add_argument("--only", default="pytest,parity,train,bench", help="comma-separated steps")
    ap.add_argument("--train-steps", type=int, default=None, help="steps per stage (default 8; 3 with --cpu)")
    ap.add_argument("--budget-min", type=float, default=8.0, help="start no step after this many minutes")
    ap.add_argument("--peer-build-s", type=int, default=240, help="time allowed to compile the peer's CUDA ops")
    args = ap.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        ap.error("no CUDA device: run on a GPU machine, or pass --cpu for the dry run")
    unknown = set(args.only.split(",")) - {"pytest", "parity", "train", "bench"}
    if unknown:
        ap.error(f"--only: unknown step(s) {', '.join(sorted(unknown))}")
    args.out.mkdir(parents=True, exist_ok=True)
    check = Check(args)
    if check.work.exists():
        shutil.rmtree(check.work)  # a fresh bundle and data every run
    check.work.mkdir()
    check.record["machine"] = machine(check)
    check.log(json.dumps(check.record["machine"]))
    steps = {"pytest": run_pytest, "parity": parity, "train": train, "bench": bench}
    for name in args.only.split(","):
        check.step(name, lambda fn=steps[name]: fn(check))
    check.save()
    check.log(f"{'passed' if check.record['ok'] else 'FAILED'} in {check.record['seconds']} s: "
              f"{check.out / 'gpu_check.json'}")
    with contextlib.suppress(Exception):
        check.log_file.close()
    return 0 if check.record["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
