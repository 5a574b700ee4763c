"""Real photos through a bundle: one row per photo, columns photo | predicted map | reconstruction | the photo
restyled with each STYLE scene's look (mix-style) | text edits (one per prompt).

    python scripts/research/photo_figure.py --model BUNDLE --photos a.jpg b.jpg ... --styles s1.png s2.png \
        --prompts "snowy,night,ocean" --out docs/demo-bundle/photos.png

The bundle was trained on synthetic scenes, so a photo comes back in the synthetic domain's look: the figure
shows how far the layout and colours carry over, not photo-quality edits. Everything runs with the bundle's
proposed model (the photo's map predicted by its segmenter), 5 refinement steps, fp32.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bgedit_cli.io import colorize_seg, image_grid, load_image, save_png
from bgedit_cli.pipelines.invert import run_inversion
from bgedit_cli.pipelines.mix import mix_style
from bgedit_cli.pipelines.models import load_models, load_text_model
from bgedit_cli.pipelines.text_edit import text_edit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--photos", type=Path, nargs="+", required=True)
    ap.add_argument("--styles", type=Path, nargs="*", default=[])
    ap.add_argument("--prompts", default="")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    m = load_models(args.model, "proposed", "cpu")
    r = m.resolution
    photos = torch.stack([load_image(p, r) for p in args.photos])
    with torch.no_grad():
        inv, ids = run_inversion(m, photos, [None] * len(args.photos), list(args.photos), args.steps)
        maps = torch.from_numpy(colorize_seg(ids)).permute(0, 3, 1, 2).float() / 127.5 - 1
        columns = [photos, maps, inv.images]
        if args.styles:
            styles = torch.stack([load_image(p, r) for p in args.styles])
            inv_s, _ = run_inversion(m, styles, [None] * len(args.styles), list(args.styles), args.steps)
            for i in range(len(args.styles)):
                b = inv_s.apply(lambda x, i=i: x[i:i + 1].expand(len(args.photos), *x.shape[1:]))
                columns.append(mix_style(m.generator, inv, b))
        prompts = [p.strip() for p in args.prompts.split(",") if p.strip()]
        if prompts:
            text = load_text_model(m)  # checked against the generator and its CLIP
            for prompt in prompts:  # any prompt: a probe, not the command's gate
                emb = text.gate(prompt, force=True).embedding
                columns.append(text_edit(m.generator, inv, text.editor, emb, seed=0))
    grid = torch.stack(columns, dim=1).flatten(0, 1)  # row-major: photo by photo
    save_png(args.out, image_grid(grid.clamp(-1, 1), len(columns)), force=True)
    heads = ["photo", "map", "reconstruction", *(f"style of {p.name}" for p in args.styles),
             *(f'"{p}"' for p in prompts)]
    print(f"{args.out}: {len(args.photos)} rows; columns: {', '.join(heads)}")


if __name__ == "__main__":
    main()
