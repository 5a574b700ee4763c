"""Average generator snapshots of one run with exponentially decaying weights: what a longer EMA would have given.

    python scripts/research/average_snapshots.py OUT.safetensors --half-life-kimg 10 --every-kimg 5 SNAP... (oldest first)

Snapshot i of n weighs `0.5 ** ((n - 1 - i) * every / half_life)`; every tensor (weights and buffers) is the
weighted mean, written with the newest snapshot's header (kind, config, provenance). All snapshots must be the
same network. `--half-life-kimg 0` gives the plain mean. Score the result like any generator (`bgedit generate`,
`bgedit evaluate --metrics swd`); docs/training-generator.md, "Continued (third session ...)".
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("snapshots", type=Path, nargs="+", help="generator files, oldest first")
    ap.add_argument("--half-life-kimg", type=float, default=10.0)
    ap.add_argument("--every-kimg", type=float, default=5.0, help="kimg between consecutive snapshots")
    args = ap.parse_args(argv)

    n = len(args.snapshots)
    total: dict[str, torch.Tensor] = {}
    weight_sum = 0.0
    for i, path in enumerate(args.snapshots):
        age = (n - 1 - i) * args.every_kimg
        w = 1.0 if args.half_life_kimg <= 0 else 0.5 ** (age / args.half_life_kimg)
        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
            for k in f.keys():
                t = f.get_tensor(k).double() * w
                total[k] = total[k] + t if k in total else t
        weight_sum += w
    save_file({k: (v / weight_sum).float().contiguous() for k, v in total.items()}, str(args.out), metadata=meta)
    print(f"{args.out}: {n} snapshots, half-life {args.half_life_kimg} kimg")


if __name__ == "__main__":
    main()
