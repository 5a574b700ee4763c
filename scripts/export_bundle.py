"""Export a trained bundle's inference files (e.g. into models/demo/), each in fp16 where its output agrees with
fp32 and in fp32 otherwise.

    python scripts/export_bundle.py --bundle DIR --out models/demo [--force] [--json]

For every network of the bundle (generator, segmenter, inversion, inversion-baseline, clip, text), the fp16-rounded
weights are loaded back into fp32 networks and compared with the originals on probes made from the generator's
own samples (fixed seeds): generator and inversion reconstructions by PSNR (>= 40 dB), the segmenter by the share
of pixels with the same class (>= 99.5%), CLIP and the text editor by the cosine of their outputs (>= 0.999).
Files that depend on others by hash (inversion and text on the generator, text on the CLIP) are re-linked to the
exported files' hashes, with the original hashes kept in the provenance. Training states and run folders are
never copied.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from bgedit_cli.bundle import BUNDLE_FILES  # noqa: E402
from bgedit_cli.checkpoint import file_sha256, load_network, read_checkpoint, save_checkpoint  # noqa: E402

MIN_PSNR, MIN_AGREEMENT, MIN_COSINE = 40.0, 0.995, 0.999
PROBES = 16


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.float() - b.float()).square().mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(4 / mse)


def rounded(net: torch.nn.Module, kind: str) -> torch.nn.Module:
    """A copy of `net` whose floating-point weights went through fp16 (what an fp16 file loads as)."""
    import copy

    twin = copy.deepcopy(net)
    with torch.no_grad():
        for t in list(twin.parameters()) + list(twin.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())
    return twin


@torch.no_grad()
def agreement(kind: str, net, twin, G, probes: torch.Tensor) -> tuple[str, float, bool]:
    """(measure, value, agrees) of the fp16-rounded `twin` against `net` on the probe images."""
    from bgedit_cli.io import one_hot_seg
    from bgedit_cli.pipelines.invert import invert

    if kind == "generator":
        z = torch.randn(PROBES, net.cfg.z_dim, generator=torch.Generator().manual_seed(0))
        value = psnr(twin(z, noise_mode="const"), net(z, noise_mode="const"))
        return "psnr_db", value, value >= MIN_PSNR
    if kind == "segmenter":
        value = (twin.predict(probes) == net.predict(probes)).float().mean().item()
        return "pixel_agreement", value, value >= MIN_AGREEMENT
    if kind == "inversion":
        seg = one_hot_seg(torch.zeros(probes.shape[0], *probes.shape[2:], dtype=torch.long)) if net.uses_seg else None
        value = psnr(invert(G, twin, probes, seg, steps=5).images, invert(G, net, probes, seg, steps=5).images)
        return "psnr_db", value, value >= MIN_PSNR
    if kind == "clip":
        from bgedit_cli.nn.clip_model import ClipEncoder

        a, b = ClipEncoder(twin), ClipEncoder(net)
        prompts = ["a lake at night", "a snowy mountain", "a village by the sea", "a foggy forest"]
        cos = torch.cat([(a.encode_text(prompts) * b.encode_text(prompts)).sum(1),
                         (a.encode_image(probes) * b.encode_image(probes)).sum(1)])
        value = cos.min().item()
        return "min_cosine", value, value >= MIN_COSINE
    if kind == "text":
        ws = G.broadcast(G.mapping(torch.randn(PROBES, G.cfg.z_dim, generator=torch.Generator().manual_seed(1))))
        emb = net.prompt_embs[torch.arange(PROBES) % max(1, net.prompt_embs.shape[0])]
        eps = torch.randn(PROBES, net.num_ws, net.w_dim, generator=torch.Generator().manual_seed(2))
        d_a, d_b = twin.edit(ws, emb, eps=eps) - ws, net.edit(ws, emb, eps=eps) - ws
        value = torch.nn.functional.cosine_similarity(d_a.flatten(1), d_b.flatten(1)).min().item()
        return "min_cosine", value, value >= MIN_COSINE
    raise ValueError(kind)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, help="probe images from this dataset's validation split (default: the "
                    "generator's samples)")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    bundle, out = args.bundle.expanduser(), args.out
    g_path = bundle / BUNDLE_FILES["generator"]
    G = load_network(g_path, "generator").eval() if g_path.is_file() else None
    if args.data is not None:
        from bgedit_cli.data.ade20k import ADE20KDataset

        resolution = G.cfg.img_resolution if G is not None else 64
        val = ADE20KDataset(args.data, "validation", resolution=resolution, flip=False, require_seg=False)
        probes = torch.stack([val[i]["img"] for i in range(min(PROBES, len(val)))])
    elif G is not None:
        z = torch.randn(PROBES, G.cfg.z_dim, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            probes = G(z, truncation_psi=0.7, noise_mode="const").clamp(-1, 1)
    else:
        sys.exit(f"{g_path}: no generator for probe images; pass --data DATASET")

    report, new_sha = {}, {}
    order = ["generator", "segmenter", "clip", "inversion", "inversion-baseline", "text"]
    for name in order:
        src = bundle / BUNDLE_FILES[name]
        if not src.is_file():
            continue
        kind = "inversion" if name.startswith("inversion") else name
        if G is None and kind in ("inversion", "text"):
            sys.exit(f"{src}: needs the bundle's generator to be checked")
        ckpt = read_checkpoint(src, kind)
        net = load_network(src, kind).eval()
        measure, value, agrees = agreement(kind, net, rounded(net, kind), G, probes)
        dtype = torch.float16 if agrees else torch.float32
        tensors = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in ckpt.tensors.items()}
        config, provenance = dict(ckpt.config), dict(ckpt.provenance)
        relinked = {}
        for key, dep in (("generator_sha256", "generator"), ("clip_sha256", "clip")):
            if config.get(key) and dep in new_sha and config[key] == new_sha[dep][0]:
                relinked[key] = {"trained_with": config[key], "exported": new_sha[dep][1]}
                config[key] = new_sha[dep][1]
        provenance["export"] = {"source_sha256": file_sha256(src), "dtype": str(dtype).removeprefix("torch."),
                                measure: value, "relinked": relinked}
        dst = out / BUNDLE_FILES[name]
        sha = save_checkpoint(dst, tensors, kind=kind, config=config, provenance=provenance, force=args.force)
        new_sha[name] = (file_sha256(src), sha)
        load_network(dst, kind)  # loads back
        report[name] = {"dtype": provenance["export"]["dtype"], measure: round(value, 5),
                        "mb": round(dst.stat().st_size / 2**20, 2), "relinked": sorted(relinked)}
    total = sum(r["mb"] for r in report.values())
    if args.json:
        print(json.dumps({"files": report, "total_mb": round(total, 2)}, indent=2))
    else:
        for name, r in report.items():
            print(f"{name:20s} {r['dtype']:8s} {r['mb']:7.2f} MB  " +
                  " ".join(f"{k} {v}" for k, v in r.items() if k not in ("dtype", "mb")))
        print(f"total {total:.2f} MB in {out}")


if __name__ == "__main__":
    main()
