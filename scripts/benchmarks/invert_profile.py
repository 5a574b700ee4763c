"""Where the time of one inversion goes: `python scripts/benchmarks/invert_profile.py [--preset paper-256]
[--precision fp32|bf16] [--batch 1] [--top 25]`.

Builds the bench's inversion (proposed variant, random weights, 5 refinement steps; benchmarks/invert.py), runs
one warm-up inversion, then one under `torch.profiler` and prints two tables: CPU time by module (inclusive,
ranges opened by forward hooks on the encoders, the hypernetworks' backbones, heads and factorized outputs, and
the generator's layers) and by op (self CPU time). Not a bench section (`bench.py` does not run it).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.invert import STEPS, _inputs, build_nets  # noqa: E402
from bgedit_cli.pipelines import invert as invert_pipeline  # noqa: E402
from bgedit_cli.runtime import autocast  # noqa: E402


def module_labels(g, net) -> dict[torch.nn.Module, str]:
    """The modules timed as ranges, by label (several modules may share one label)."""
    from bgedit_cli.nn.hypernet import FactorizedDelta, LayerHead, SharedHead
    from bgedit_cli.nn.stylegan2 import SynthesisLayer, ToRGB

    labels = {net.image_encoder: "image_encoder", g.mapping: "G.mapping"}
    if net.seg_encoder is not None:
        labels[net.seg_encoder] = "seg_encoder"
    for name in ("hyper_img", "hyper_seg"):
        hyper = getattr(net, name)
        if hyper is None:
            continue
        labels[hyper.backbone] = f"{name}.backbone"
        for m in hyper.modules():
            if isinstance(m, SharedHead):
                labels[m] = f"{name}.heads: shared layers' codes (conv stack + linear)"
            elif isinstance(m, LayerHead):
                labels[m] = f"{name}.heads: per-layer heads (conv stack + output)"
            elif isinstance(m, FactorizedDelta):
                labels[m] = f"{name}.heads: factorized output of the shared layers"
    for m in g.synthesis.modules():
        if isinstance(m, SynthesisLayer):
            labels[m] = f"G.conv {m.resolution}px{' up' if m.up else ''}"
        elif isinstance(m, ToRGB):
            labels[m] = "G.torgb"
    return labels


def profile(preset: str, precision: str, batch: int, top: int) -> None:
    device = torch.device("cpu")
    g, net = build_nets(preset, device, precision)
    img, seg = _inputs(batch, g.cfg.img_resolution, device)
    handles = []
    for module, label in module_labels(g, net).items():
        def pre(_m, _args, label=label):
            rf = torch.autograd.profiler.record_function(f"## {label}")
            rf.__enter__()
            _m._prof_range = rf

        def post(_m, _args, _out):
            _m._prof_range.__exit__(None, None, None)

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    sum_deltas = invert_pipeline.sum_deltas

    def timed_sum(*a):
        with torch.autograd.profiler.record_function("## delta sums (delta_img + delta_seg)"):
            return sum_deltas(*a)

    invert_pipeline.sum_deltas = timed_sum
    with autocast(device, precision):
        invert_pipeline.invert(g, net, img, seg, steps=STEPS)  # warm-up
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            invert_pipeline.invert(g, net, img, seg, steps=STEPS)
    for h in handles:
        h.remove()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    print(f"# {preset}, {precision}, batch {batch}, {STEPS} steps, {torch.get_num_threads()} thread(s): "
          f"{total:.2f} s CPU in ops")
    print("\n| module (inclusive) | calls | CPU s | share |\n| --- | ---: | ---: | ---: |")
    mods = sorted((e for e in events if e.key.startswith("## ")), key=lambda e: -e.cpu_time_total)
    for e in mods:
        print(f"| {e.key[3:]} | {e.count} | {e.cpu_time_total / 1e6:.3f} | {e.cpu_time_total / 1e6 / total:.1%} |")
    print("\n| op (self) | calls | CPU s | share |\n| --- | ---: | ---: | ---: |")
    ops = sorted((e for e in events if not e.key.startswith("## ")), key=lambda e: -e.self_cpu_time_total)
    for e in ops[:top]:
        print(f"| {e.key} | {e.count} | {e.self_cpu_time_total / 1e6:.3f} | {e.self_cpu_time_total / 1e6 / total:.1%} |")
    by_kind = defaultdict(float)
    for e in ops:
        by_kind["convolution" if "conv" in e.key or "mkldnn" in e.key else
                "matmul" if e.key in ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear") else
                "copies and casts" if e.key in ("aten::copy_", "aten::to", "aten::_to_copy", "aten::contiguous",
                                                "aten::clone") else "other"] += e.self_cpu_time_total / 1e6
    print("\n" + ", ".join(f"{k} {v:.2f} s ({v / total:.0%})" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])))


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
