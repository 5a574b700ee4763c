"""Does a generator draw what the scenes hold? A segmenter reads real and generated images alike; compare, class
by class, how often each class is there and how much of the image it covers.

    python scripts/research/class_shares.py --segmenter SEG --real DIR --fake DIR [DIR ...] [--num 1000]
        [--min-share 0.01] [--json FILE]

Each folder's first `--num` images (by name, resized to the segmenter's resolution) are read by the segmenter.
Per class: "present" is the share of images where it covers at least `--min-share` of the pixels, "pixels" its
mean share of the pixels. Both columns of the real folder come from the same segmenter, so its mistakes fall on
both sides alike. The table lists the real scenes' classes by pixel share (those at 0.2% of the pixels or
more). Reading generated samples this way tells a generator that drops a class (never draws buildings) from
one that draws it in the right share but too small or blurred for a reconstruction to keep.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bgedit_cli.checkpoint import load_network
from bgedit_cli.data.ade20k_classes import CLASS_NAMES
from bgedit_cli.io import load_image
from bgedit_cli.pipelines.evaluation.context import list_images


def read_folder(net, folder: Path, num: int, batch_size: int = 100) -> torch.Tensor:
    """The segmenter's class map of each of the folder's first `num` images: int64 [N, H, W]."""
    files = list_images(folder, str(folder))[:num]
    maps = []
    with torch.no_grad():
        for i in range(0, len(files), batch_size):
            x = torch.stack([load_image(p, net.cfg.resolution) for p in files[i:i + batch_size]])
            maps.append(net.predict(x).long())
    return torch.cat(maps)


def shares(maps: torch.Tensor, num_classes: int, min_share: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(share of images where each class covers >= min_share of the pixels, mean pixel share), each [C]."""
    n = maps.shape[0]
    flat = maps.reshape(n, -1)
    offsets = torch.arange(n).unsqueeze(1) * num_classes
    counts = torch.bincount((flat + offsets).flatten(), minlength=n * num_classes).reshape(n, num_classes)
    pixel = counts.float() / flat.shape[1]
    return (pixel >= min_share).float().mean(0), pixel.mean(0)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--segmenter", type=Path, required=True)
    ap.add_argument("--real", type=Path, required=True, help="folder of real scenes")
    ap.add_argument("--fake", type=Path, nargs="+", required=True, help="folders of generated images")
    ap.add_argument("--num", type=int, default=1000)
    ap.add_argument("--min-share", type=float, default=0.01)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    net = load_network(args.segmenter, "segmenter").eval()
    folders = {"real": args.real} | {str(p): p for p in args.fake}
    table = {name: shares(read_folder(net, p, args.num), net.cfg.num_classes, args.min_share)
             for name, p in folders.items()}
    present_real, pixel_real = table["real"]
    classes = [c for c in torch.argsort(pixel_real, descending=True).tolist() if pixel_real[c] >= 0.002]
    result = {"settings": {"segmenter": str(args.segmenter), "num": args.num, "min_share": args.min_share},
              "folders": {name: str(p) for name, p in folders.items()},
              "classes": {CLASS_NAMES[c]: {name: {"present": round(present[c].item(), 4),
                                                  "pixels": round(pixel[c].item(), 4)}
                                           for name, (present, pixel) in table.items()} for c in classes}}
    print("| class | " + " | ".join(f"{Path(n).name}: present / pixels" for n in folders) + " |")
    print("|---|" + "---:|" * len(folders))
    for c in classes:
        print(f"| {CLASS_NAMES[c]} | " + " | ".join(f"{present[c]:.2f} / {pixel[c]:.3f}"
                                                   for present, pixel in table.values()) + " |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
