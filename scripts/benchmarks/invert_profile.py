"""Where the time of one inversion goes: `python scripts/benchmarks/invert_profile.py [--preset paper-256]
[--precision fp32|bf16] [--batch 1] [--top 25]`.

Builds the bench's inversion (proposed variant, random weights, 5 refinement steps; benchmarks/invert.py), runs
one warm-up inversion, then one more under `torch.profiler`, and prints:
- CPU time by module: the process's CPU seconds spent inside the encoders, the hypernetworks' backbones, heads
  and factorized outputs, and the generator's layers (inclusive; measured by forward hooks with
  `time.process_time`, so time the process spent waiting for other processes on a shared machine is not counted);
- CPU time by op: `torch.profiler`'s self time per op (the profiler's clock is wall time per op: on a busy machine
  its absolute figures include waiting; the shares are what to read).
Not a bench section (`bench.py` does not run it).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.invert import STEPS, _inputs, build_nets  # noqa: E402
from bgedit_cli.pipelines import invert as invert_pipeline  # noqa: E402
from bgedit_cli.runtime import autocast  # noqa: E402


def module_labels(g, net) -> dict[torch.nn.Module, str]:
    """The modules timed, by label (several modules may share one label)."""
    from bgedit_cli.nn.hypernet import FactorizedDelta, LayerHead, SharedHead
    from bgedit_cli.nn.stylegan2 import SynthesisLayer, ToRGB

    labels = {net.image_encoder: "image encoder", g.mapping: "G mapping", g.synthesis: "G synthesis (all layers)"}
    if net.seg_encoder is not None:
        labels[net.seg_encoder] = "seg encoder"
    for name in ("hyper_img", "hyper_seg"):
        hyper = getattr(net, name)
        if hyper is None:
            continue
        labels[hyper] = f"{name} (all)"
        labels[hyper.backbone] = f"{name}: backbone"
        for m in hyper.modules():
            if isinstance(m, (SharedHead, LayerHead)):
                labels[m.convs] = f"{name}: heads' conv stacks"
            if isinstance(m, LayerHead):
                labels[m.output] = f"{name}: per-layer outputs (dense)"
            elif isinstance(m, FactorizedDelta):
                labels[m] = f"{name}: shared factorized output"
    for m in g.synthesis.modules():
        if isinstance(m, SynthesisLayer):
            labels[m] = f"G conv {m.resolution}px{' up' if m.up else ''}"
        elif isinstance(m, ToRGB):
            labels[m] = "G toRGB"
    return labels


def time_modules(g, net, run) -> tuple[float, dict[str, tuple[int, float]]]:
    """(process CPU seconds of `run()`, {label: (calls, inclusive CPU seconds)})."""
    spent: dict[str, list] = defaultdict(lambda: [0, 0.0])
    handles = []
    for module, label in module_labels(g, net).items():
        def pre(m, _args):
            m._cpu_start = time.process_time()

        def post(m, _args, _out, label=label):
            spent[label][0] += 1
            spent[label][1] += time.process_time() - m._cpu_start

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        t = time.process_time()
        run()
        total = time.process_time() - t
    finally:
        for h in handles:
            h.remove()
    return total, {k: (v[0], v[1]) for k, v in spent.items()}


def profile(preset: str, precision: str, batch: int, top: int) -> None:
    device = torch.device("cpu")
    g, net = build_nets(preset, device, precision)
    img, seg = _inputs(batch, g.cfg.img_resolution, device)

    def run():
        invert_pipeline.invert(g, net, img, seg, steps=STEPS)

    with autocast(device, precision):
        run()  # warm-up
        total, modules = time_modules(g, net, run)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            run()
    print(f"# {preset}, {precision}, batch {batch}, {STEPS} steps, {torch.get_num_threads()} thread(s): "
          f"{total:.2f} CPU s per inversion")
    print("\n| module (inclusive) | calls | CPU s | share |\n| --- | ---: | ---: | ---: |")
    for label, (calls, sec) in sorted(modules.items(), key=lambda kv: -kv[1][1]):
        print(f"| {label} | {calls} | {sec:.3f} | {sec / total:.1%} |")
    events = prof.key_averages()
    ops = sorted(events, key=lambda e: -e.self_cpu_time_total)
    prof_total = sum(e.self_cpu_time_total for e in ops) / 1e6
    print("\n| op (self) | calls | profiler s | share |\n| --- | ---: | ---: | ---: |")
    for e in ops[:top]:
        print(f"| {e.key} | {e.count} | {e.self_cpu_time_total / 1e6:.3f} | "
              f"{e.self_cpu_time_total / 1e6 / prof_total:.1%} |")
    kinds = defaultdict(float)
    for e in ops:
        kind = ("convolution" if "conv" in e.key else
                "matrix products" if e.key in ("aten::mm", "aten::addmm", "aten::bmm", "aten::addmm_") else
                "copies and casts" if e.key in ("aten::copy_", "aten::_to_copy", "aten::clone") else "other")
        kinds[kind] += e.self_cpu_time_total / 1e6
    shares = sorted(kinds.items(), key=lambda kv: -kv[1])
    print("\nby kind: " + ", ".join(f"{k} {v / prof_total:.0%}" for k, v in shares))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="paper-256")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    profile(args.preset, args.precision, args.batch, args.top)


if __name__ == "__main__":
    main()
