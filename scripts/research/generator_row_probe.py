"""Which W+ rows of a generator carry layout and which carry style: a crossover grid.

    python scripts/research/generator_row_probe.py GENERATOR OUT.png [--cuts 1,2,3,4] [--pairs 6] [--seed 2]

Each grid row is one pair of random codes (A, B): A | rows < k from A, the rest from B (one column per cut k)
| B. Where the column still shows A's layout in B's colours, rows < k carry the layout: that k is a good
`bgedit train inversion --seg-layers`. Used for the demo bundle (docs/training-inversion.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bgedit_cli.io import image_grid, save_png
from bgedit_cli.pipelines.models import load_generator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("generator", type=Path, help="generator.safetensors or a bundle folder")
    ap.add_argument("out")
    ap.add_argument("--cuts", default="1,2,3,4")
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--truncation", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=2)
    args = ap.parse_args()
    G = load_generator(args.generator).generator
    cuts = [int(k) for k in args.cuts.split(",")]
    n = G.cfg.num_ws
    gen = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        z = torch.randn(2, args.pairs, G.cfg.z_dim, generator=gen)
        wa, wb = (G.mapping(zz, truncation_psi=args.truncation)[:, None].repeat(1, n, 1) for zz in z)
        codes = [wa]
        for k in cuts:
            mixed = wb.clone()
            mixed[:, :k] = wa[:, :k]
            codes.append(mixed)
        codes.append(wb)
        cols = [G(ws=c) for c in codes]                       # each [pairs, 3, R, R]
        imgs = torch.stack(cols, 1).flatten(0, 1)             # row-major: pair by pair
    save_png(Path(args.out), image_grid(imgs, len(cols)), force=True)
    print(f"{args.out}: {args.pairs} pairs x columns A, {', '.join(f'k={k}' for k in cuts)}, B")


if __name__ == "__main__":
    main()
