"""How a segmenter's reading of held-out scenes falls as the pixels are degraded (blur, noise, lower resolution).

    python scripts/research/segmenter_degradations.py --data HELD --segmenter A.safetensors [B.safetensors ...]

For each segmenter: mIoU against the ground-truth maps of the first `--num` validation scenes, clean and under
fixed degradations (Gaussian blur sigma 0.5-2 px, Gaussian noise std 0.03-0.1 on [-1, 1], 2x and 4x average
pooling then bilinear upsampling), each with the PSNR of the degraded images. A generator's reconstruction is
off by 24-28 dB; this says how much of a low reading of one is the segmenter's sensitivity to the pixels rather
than a wrong layout (docs/segmenter.md, "Reading degraded images").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from bgedit_cli.checkpoint import load_network
from bgedit_cli.data.ade20k import ADE20KDataset
from bgedit_cli.metrics.pairwise import psnr
from bgedit_cli.metrics.segmentation import confusion_matrix, segmentation_scores

BLURS = (0.5, 0.7, 1.0, 1.4, 2.0)
NOISES = (0.03, 0.06, 0.1)
POOLS = (2, 4)


def degradations(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The fixed degradations of images `x` ([-1, 1]), by name; the noise is seeded."""
    out = {"clean": x}
    for s in BLURS:
        out[f"blur {s}"] = TF.gaussian_blur(x, kernel_size=2 * int(3 * s) + 1, sigma=s)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    for n in NOISES:
        out[f"noise {n}"] = x + n * noise
    for f in POOLS:
        out[f"pool {f}"] = F.interpolate(F.avg_pool2d(x, f), size=x.shape[-2:], mode="bilinear",
                                         align_corners=False)
    return {k: v.clamp(-1, 1) for k, v in out.items()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="ADE20K-layout folder with annotations")
    ap.add_argument("--segmenter", type=Path, nargs="+", required=True)
    ap.add_argument("--split", default="validation")
    ap.add_argument("--num", type=int, default=256)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    nets = {str(p): load_network(p, "segmenter").eval() for p in args.segmenter}
    resolution = next(iter(nets.values())).cfg.resolution
    dataset = ADE20KDataset(args.data, args.split, resolution=resolution, flip=False, require_seg=True)
    items = [dataset[i] for i in range(min(args.num, len(dataset)))]
    x = torch.stack([it["img"] for it in items])
    maps = torch.stack([torch.as_tensor(it["seg"]).long() for it in items])
    images = degradations(x)
    result = {"images": len(items), "psnr": {k: round(psnr(v, x).mean().item(), 2) for k, v in images.items()
                                             if k != "clean"}, "miou": {}}
    with torch.no_grad():
        for name, net in nets.items():
            result["miou"][name] = {k: round(segmentation_scores(confusion_matrix(
                net.predict(v), maps, net.cfg.num_classes))["miou"], 4) for k, v in images.items()}
    print("| degradation | PSNR | " + " | ".join(Path(n).parent.name or n for n in nets) + " |")
    print("|---|---:|" + "---:|" * len(nets))
    for k in images:
        row = " | ".join(f"{result['miou'][n][k]:.3f}" for n in nets)
        print(f"| {k} | {result['psnr'].get(k, float('inf')):.1f} | {row} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
