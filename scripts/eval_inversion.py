"""Evaluate a bundle's inversion networks: reconstruction per refinement step and mixing against ground truth.

    python scripts/eval_inversion.py --data /tmp/synth64 --model /tmp/bundle-demo [--variant proposed|baseline]
        [--inversion FILE] [--num 200] [--steps 5] [--mixing-scenes 8] [--batch-size 8] [--device auto]
        [--json FILE] [--alexnet FILE]

- Reconstruction: the first `--num` validation images (sorted by name), inverted with `--steps` refinement steps;
  L2 (on [-1, 1]), PSNR and MS-SSIM (on [0, 1]; fewer scales below 161 px, labelled) of y_0 .. y_steps, and
  LPIPS-Alex when the AlexNet weights are present (otherwise the report says why there is no LPIPS number).
- Mixing (synthetic data only: `DATA/mixing/validation/{a}__{b}.png` from `bgedit data synth`): style and content
  mixing of every ordered pair of the first `--mixing-scenes` scenes against the rendered ground truth, next to
  the trivial answers (A's / B's reconstruction, A's / B's input). See bgedit_cli/pipelines/evaluate_mixing.py.
The proposed variant uses the ground-truth annotation of each image as its seg map.
Markdown tables go to stdout; `--json FILE` also writes everything (settings included) as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def table(rows: dict[str, dict[str, float]], metrics: list[str]) -> str:
    lines = ["| answer | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for name, vals in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{vals[m]:.4f}" if m in vals else "-" for m in metrics) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    import torch

    from bgedit_cli.data.ade20k import ADE20KDataset
    from bgedit_cli.errors import BgeditError
    from bgedit_cli.pipelines.evaluate_mixing import mixing_scores, reconstruction_scores
    from bgedit_cli.pipelines.models import load_models

    models = load_models(args.model, args.variant, args.device, inversion=args.inversion)
    G, net, device = models.generator, models.net, models.device

    lpips_net, lpips_status = None, "computed"
    if G.cfg.img_resolution < 32:
        lpips_status = f"unavailable: LPIPS-Alex needs >= 32 px images, this model is {G.cfg.img_resolution} px"
    else:
        try:
            from bgedit_cli.losses.lpips import build_lpips

            lpips_net = build_lpips(args.alexnet, device)
        except BgeditError as exc:
            lpips_status = f"unavailable: {' '.join(str(exc).split())}"

    t0 = time.time()
    dataset = ADE20KDataset(args.data, "validation", resolution=G.cfg.img_resolution, flip=False,
                            require_seg=net.uses_seg)
    recon, _ = reconstruction_scores(G, net, dataset, num=args.num, steps=args.steps, batch_size=args.batch_size,
                                     device=device, grid_images=0, lpips_net=lpips_net)
    t_recon = time.time() - t0
    result = {
        "settings": {"data": str(Path(args.data).resolve()), "model": str(models.bundle.resolve()),
                     "variant": args.variant, "inversion": str(net.checkpoint_path),
                     "inversion_steps_trained": net.provenance.get("steps"),
                     "generator_sha256": models.generator_sha256, "num": recon["images"], "steps": args.steps,
                     "seg": "ground-truth annotations" if net.uses_seg else "none (baseline)",
                     "ms_ssim_variant": recon["ms_ssim_variant"], "lpips": lpips_status, "device": str(device),
                     "torch": torch.__version__, "machine": platform.machine(), "threads": torch.get_num_threads()},
        "reconstruction": recon, "seconds": {"reconstruction": round(t_recon, 1)},
    }
    mix_root = Path(args.data)
    has_gt = (mix_root / "mixing").is_dir() or (mix_root / "ADEChallengeData2016" / "mixing").is_dir()
    if args.mixing_scenes < 2:
        result["mixing"] = f"skipped: --mixing-scenes {args.mixing_scenes} (needs 2 or more)"
    elif has_gt:
        t0 = time.time()
        result["mixing"] = mixing_scores(G, net, mix_root, steps=args.steps, batch_size=args.batch_size, device=device,
                                         max_scenes=args.mixing_scenes, lpips_net=lpips_net)
        result["seconds"]["mixing"] = round(time.time() - t0, 1)
    else:
        result["mixing"] = "skipped: no DATA/mixing/validation ground truth (synthetic data only)"
    return result


def report(result: dict) -> str:
    s = result["settings"]
    metrics = ["l2", "psnr", "ms_ssim"] + (["lpips"] if s["lpips"] == "computed" else [])
    out = [f"# Inversion evaluation: {s['variant']} ({s['inversion']}, {s['inversion_steps_trained']} training steps)",
           "", f"Reconstruction of {s['num']} validation images of {s['data']}; seg maps: {s['seg']}; "
           f"MS-SSIM column = {s['ms_ssim_variant']}; LPIPS: {s['lpips'].rstrip('.')}.", ""]
    rows = {f"y_{t}" + (" (encoders only)" if t == 0 else ""): v
            for t, v in enumerate(result["reconstruction"]["per_step"])}
    out.append(table(rows, metrics))
    mix = result["mixing"]
    if isinstance(mix, dict):
        out += ["", f"Mixing against rendered ground truth: {mix['pairs']} ordered pairs of {mix['scenes']} scenes, "
                f"method: {mix['method']}.", "", "Style mixing (A's content, B's style) vs render(content A, style B):",
                "", table(mix["style"], metrics), "", "Content mixing (A's style, B's content) vs "
                "render(content B, style A):", "", table(mix["content"], metrics)]
    else:
        out += ["", f"Mixing: {mix}"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="ADE20K-layout folder (validation split used)")
    parser.add_argument("--model", type=Path, default=None, help="bundle folder (default: $BGEDIT_HOME/models/default)")
    parser.add_argument("--variant", choices=("proposed", "baseline"), default="proposed")
    parser.add_argument("--inversion", type=Path, default=None, help="score this inversion file (e.g. a run "
                        "snapshot) instead of the bundle's")
    parser.add_argument("--num", type=int, default=200, help="validation images for reconstruction")
    parser.add_argument("--steps", type=int, default=5, help="refinement steps at inference")
    parser.add_argument("--mixing-scenes", type=int, default=8, help="scenes of the mixing benchmark (pairs: M(M-1))")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--alexnet", type=Path, default=None, help="alexnet-owt-7be5be79.pth for LPIPS")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    from bgedit_cli.errors import BgeditError

    try:
        result = run(args)
    except BgeditError as exc:
        if os.environ.get("BGEDIT_DEBUG") == "1":
            raise
        print(f"Error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(report(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
