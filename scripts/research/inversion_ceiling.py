"""How well can the generator reproduce held-out scenes at all? Optimise each image's code directly (no
encoders): the ceiling that the inversion networks can approach.

    python scripts/research/inversion_ceiling.py --data DATA --model BUNDLE [--num 64] [--steps 1000] [--delta-steps 300]
        [--batch-size 16] [--lr 0.05] [--delta-lr 0.002] [--report-at 100,300,600,1000] [--json FILE]
        [--segmenter FILE ...] [--save DIR]

Per batch of validation images (first `--num` by name): W+ starts at the generator's average latent and is
optimised with Adam on L2 + (1 - MS-SSIM) for `--steps` steps (`wplus` rows); then, from that code, per-image
weight deltas of every tuned conv (`weight * (1 + delta)`, as the hypernetworks predict them) are optimised
with the code for `--delta-steps` more (`wplus+deltas` rows). Scores at each `--report-at` step: L2 on
[-1, 1], PSNR and MS-SSIM on [0, 1] (fewer scales below 161 px), means over the images. The loss of image i
depends only on its own code, so batching does not change the result. When the bundle has a segmenter, the
final reconstructions of each phase (and the inputs) are also read by it against the ground-truth maps (mIoU
over all images): how much of a scene's layout survives reconstruction at all, which bounds what a layout edit
can show through the segmenter. `--segmenter` names other segmenter files to read the same reconstructions with
(the bundle's is read first when it has one). With a segmenter, the JSON also holds each class's IoU (and
pixel count in the ground truth) for the inputs and each phase, and a table of the classes that lose the most:
which content the generator does not draw back. `--save DIR` writes the inputs and the final reconstructions as
PNGs (DIR/<phase>/<name>.png) to look at.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from bgedit_cli.bundle import bundle_file
from bgedit_cli.checkpoint import load_network
from bgedit_cli.data.ade20k import ADE20KDataset
from bgedit_cli.data.ade20k_classes import CLASS_NAMES
from bgedit_cli.io import save_png, to_uint8
from bgedit_cli.metrics.pairwise import ms_ssim, ms_ssim_label, psnr
from bgedit_cli.metrics.segmentation import class_iou, confusion_matrix, segmentation_scores
from bgedit_cli.pipelines.models import load_generator


def scores(y: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per image: l2 on [-1, 1], psnr and ms_ssim on [0, 1] (the metrics map [-1, 1] inputs there)."""
    return {"l2": (y - x).square().mean(dim=[1, 2, 3]), "psnr": psnr(y, x), "ms_ssim": ms_ssim(y, x)}


def optimise(G, x: torch.Tensor, *, steps: int, delta_steps: int, lr: float, delta_lr: float,
             report_at: set[int]) -> tuple[dict[str, dict[int, dict[str, torch.Tensor]]], dict[str, torch.Tensor]]:
    """Scores {phase: {step: {metric: [N]}}} of the direct optimisation of the images `x`, and each phase's
    final images."""
    n = x.shape[0]
    ws = G.w_avg.detach().reshape(1, 1, -1).repeat(n, G.cfg.num_ws, 1).clone().requires_grad_(True)
    out: dict[str, dict[int, dict[str, torch.Tensor]]] = {"wplus": {}, "wplus+deltas": {}}
    final: dict[str, torch.Tensor] = {}

    def loss_of(y: torch.Tensor) -> torch.Tensor:  # summed over images: each image's gradient is its own
        s = scores(y, x)
        return (s["l2"] + (1 - s["ms_ssim"])).sum()

    opt = torch.optim.Adam([ws], lr=lr)
    for step in range(1, steps + 1):
        y = G(ws=ws, noise_mode="const")
        opt.zero_grad(set_to_none=True)
        loss_of(y).backward()
        opt.step()
        if step in report_at or step == steps:
            with torch.no_grad():
                final["wplus"] = G(ws=ws, noise_mode="const")
                out["wplus"][step] = {k: v.cpu() for k, v in scores(final["wplus"], x).items()}
    if delta_steps:
        deltas = {k: torch.zeros(n, *shape, requires_grad=True) for k, shape in G.layer_shapes().items()}
        opt = torch.optim.Adam([{"params": [ws], "lr": lr}, {"params": list(deltas.values()), "lr": delta_lr}])
        for step in range(1, delta_steps + 1):
            y = G(ws=ws, noise_mode="const", weight_deltas=deltas)
            opt.zero_grad(set_to_none=True)
            loss_of(y).backward()
            opt.step()
            if step in report_at or step == delta_steps:
                with torch.no_grad():
                    y = G(ws=ws, noise_mode="const", weight_deltas=deltas)
                    out["wplus+deltas"][step] = {k: v.cpu() for k, v in scores(y, x).items()}
                    final["wplus+deltas"] = y
    return out, final


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True, help="bundle (its generator.safetensors is used)")
    ap.add_argument("--split", default="validation")
    ap.add_argument("--num", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--delta-steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--delta-lr", type=float, default=0.002)
    ap.add_argument("--report-at", default="100,300,600,1000")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--segmenter", type=Path, nargs="*", default=[], help="more segmenters to read with")
    ap.add_argument("--save", type=Path, help="write inputs and final reconstructions as PNGs here")
    args = ap.parse_args(argv)

    G = load_generator(args.model).generator.requires_grad_(False)
    r = G.cfg.img_resolution
    seg_path = bundle_file(args.model, "segmenter", must_exist=False)
    readers = {str(p): load_network(p, "segmenter").eval() for p in ([seg_path] if seg_path.is_file() else [])
               + list(args.segmenter)}
    dataset = ADE20KDataset(args.data, args.split, resolution=r, flip=False, require_seg=bool(readers))
    cms: dict[str, dict[str, torch.Tensor]] = {name: {} for name in readers}
    num = min(args.num, len(dataset))
    report_at = {int(s) for s in args.report_at.split(",") if s}
    t = time.time()
    merged: dict[str, dict[int, dict[str, list[torch.Tensor]]]] = {}
    for start in range(0, num, args.batch_size):
        items = [dataset[i] for i in range(start, min(start + args.batch_size, num))]
        x = torch.stack([it["img"] for it in items])
        part, final = optimise(G, x, steps=args.steps, delta_steps=args.delta_steps, lr=args.lr, delta_lr=args.delta_lr,
                        report_at=report_at)
        for phase, by_step in part.items():
            for step, s in by_step.items():
                for k, v in s.items():
                    merged.setdefault(phase, {}).setdefault(step, {}).setdefault(k, []).append(v)
        if args.save:
            for name, y in {"input": x, **final}.items():
                for i, it in enumerate(items):
                    save_png(args.save / name / f"{it['name']}.png", to_uint8(y[i:i + 1])[0], force=True)
        if readers:
            maps = torch.stack([torch.as_tensor(it["seg"]).long() for it in items])
        for reader, seg_net in readers.items():
            for name, y in {"input": x, **final}.items():
                cm = confusion_matrix(seg_net.predict(y.clamp(-1, 1)), maps, seg_net.cfg.num_classes)
                cms[reader][name] = cms[reader][name] + cm if name in cms[reader] else cm
        print(f"# {min(start + args.batch_size, num)}/{num} images, {time.time() - t:.0f} s", file=sys.stderr)
    table = {phase: {step: {k: round(torch.cat(v).mean().item(), 4) for k, v in s.items()}
                     for step, s in sorted(by_step.items())} for phase, by_step in merged.items()}
    result = {"images": num, "resolution": r, "ms_ssim_variant": ms_ssim_label(r), "settings": vars(args) | {
        "data": str(args.data), "model": str(args.model), "json": str(args.json),
        "segmenter": [str(p) for p in args.segmenter], "save": args.save and str(args.save)}, "scores": table,
        "seconds": round(time.time() - t, 1),
        "layout_miou": {reader: {name: round(segmentation_scores(cm)["miou"], 4) for name, cm in by_name.items()}
                        for reader, by_name in cms.items()},
        "class_iou": {reader: per_class(by_name) for reader, by_name in cms.items()}}
    print("| phase | step | L2 | PSNR | MS-SSIM |\n|---|---:|---:|---:|---:|")
    for phase, by_step in table.items():
        for step, s in by_step.items():
            print(f"| {phase} | {step} | {s['l2']:.4f} | {s['psnr']:.2f} | {s['ms_ssim']:.4f} |")
    for reader, by_name in result["layout_miou"].items():
        for name, miou in by_name.items():
            print(f"{reader}: mIoU against the ground-truth maps, {name}: {miou:.3f}")
    for reader, rows in result["class_iou"].items():
        phases = [p for p in next(iter(rows.values()))["iou"] if p != "input"]
        print(f"\n{reader}: classes by IoU lost (input - {phases[-1]})")
        print("| class | pixels | input | " + " | ".join(phases) + " |\n|---|---:|---:|" + "---:|" * len(phases))
        for name, row in sorted(rows.items(), key=lambda kv: kv[1]["iou"][phases[-1]] - kv[1]["iou"]["input"]):
            print(f"| {name} | {row['pixels']} | {row['iou']['input']:.3f} | "
                  + " | ".join(f"{row['iou'][p]:.3f}" for p in phases) + " |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


def per_class(by_name: dict[str, torch.Tensor]) -> dict[str, dict]:
    """{class name: {"pixels": ground-truth pixels, "iou": {phase: IoU}}} for the classes in the ground truth."""
    cm = by_name["input"]
    pixels = cm.sum(dim=1)
    ious = {name: class_iou(m) for name, m in by_name.items()}
    return {CLASS_NAMES[c]: {"pixels": int(pixels[c]),
                             "iou": {name: round(iou[c].item(), 4) for name, iou in ious.items()}}
            for c in torch.nonzero(pixels).flatten().tolist()}


if __name__ == "__main__":
    main()
