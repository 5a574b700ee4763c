"""Does a generator draw what the scenes hold? A segmenter reads real and generated images alike; compare, class
by class, how often each class is there and how much of the image it covers.

    python scripts/research/class_shares.py --segmenter SEG --real DIR --fake DIR [DIR ...] [--num 1000]
        [--min-share 0.01] [--json FILE] [--figure OUT.png --figure-class building]

Each folder's first `--num` images (by name, resized to the segmenter's resolution) are read by the segmenter.
Per class: "present" is the share of images where it covers at least `--min-share` of the pixels, "pixels" its
mean share of the pixels. Both columns of the real folder come from the same segmenter, so its mistakes fall on
both sides alike. The table lists the real scenes' classes by pixel share (those at 0.2% of the pixels or
more). Reading generated samples this way tells a generator that drops a class (never draws buildings) from
one that draws it in the right share but too small or blurred for a reconstruction to keep. `--figure` draws,
for each folder, the 8 images where the segmenter reads the most of `--figure-class`, each beside that reading
(one band of two rows per folder, 3x nearest): what the generator draws where the segmenter sees the class.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bgedit_cli.checkpoint import load_network
from bgedit_cli.data.ade20k_classes import CLASS_NAMES
from bgedit_cli.io import colorize_seg, load_image, save_png, to_uint8
from bgedit_cli.pipelines.evaluation.context import list_images


def read_folder(net, folder: Path, num: int, batch_size: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """The folder's first `num` images ([N, 3, H, W] in [-1, 1]) and the segmenter's class map of each (int64
    [N, H, W])."""
    files = list_images(folder, str(folder))[:num]
    x = torch.stack([load_image(p, net.cfg.resolution) for p in files])
    with torch.no_grad():
        maps = torch.cat([net.predict(x[i:i + batch_size]).long() for i in range(0, len(x), batch_size)])
    return x, maps


def most_of(x: torch.Tensor, maps: torch.Tensor, class_id: int, n: int = 8, cols: int = 4) -> np.ndarray:
    """The `n` images with the largest share of `class_id`, each beside its map, `cols` pairs a row: uint8 HWC."""
    top = torch.argsort((maps == class_id).float().mean(dim=(1, 2)), descending=True)[:n]
    pairs = [np.concatenate([to_uint8(x[i:i + 1])[0], colorize_seg(maps[i])], axis=1) for i in top.tolist()]
    return np.concatenate([np.concatenate(pairs[r:r + cols], axis=1) for r in range(0, n, cols)], axis=0)


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
    ap.add_argument("--figure", type=Path, help="PNG: where each folder's images show the most of --figure-class")
    ap.add_argument("--figure-class", default="building", choices=CLASS_NAMES[1:], metavar="NAME")
    args = ap.parse_args(argv)

    net = load_network(args.segmenter, "segmenter").eval()
    folders = {"real": args.real} | {str(p): p for p in args.fake}
    read = {name: read_folder(net, p, args.num) for name, p in folders.items()}
    table = {name: shares(maps, net.cfg.num_classes, args.min_share) for name, (_, maps) in read.items()}
    _, pixel_real = table["real"]
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
    if args.figure:
        class_id = CLASS_NAMES.index(args.figure_class)
        bands = [most_of(x, maps, class_id) for x, maps in read.values()]
        gap = np.full((4, bands[0].shape[1], 3), 255, dtype=np.uint8)
        grid = np.concatenate([part for band in bands for part in (band, gap)][:-1], axis=0)
        save_png(args.figure, np.asarray(Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3),
                                                                      Image.NEAREST)), force=True)
    return result


if __name__ == "__main__":
    main()
