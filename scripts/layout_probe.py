"""Where does a layout edit's layout come from? For every ordered pair (A, B) of the first 8 validation scenes
with mixing ground truth, edit A with B's map three ways and read each back with the bundle's segmenter (mIoU
against B's map): the encoders' y_0 alone (seg latents from B's map + A's w, no weight deltas); the refinement
with A's delta_img kept (what `edit_layout` does); the refinement with delta_img dropped. A's reconstruction
(an edit that ignores the map), B's input and B's own reconstruction for comparison.

    python scripts/layout_probe.py BUNDLE DATA
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
torch.set_num_threads(1)
from bgedit_cli.checkpoint import load_network  # noqa: E402
from bgedit_cli.io import load_image, load_seg, one_hot_seg  # noqa: E402
from bgedit_cli.metrics.segmentation import confusion_matrix, segmentation_scores  # noqa: E402
from bgedit_cli.pipelines.evaluate_mixing import mixing_pairs  # noqa: E402
from bgedit_cli.pipelines.invert import compose_ws, invert, refine_step, render  # noqa: E402
bundle, data = Path(sys.argv[1]), Path(sys.argv[2])
G = load_network(bundle / "generator.safetensors", "generator"); net = load_network(bundle / "inversion.safetensors", "inversion")
seg_net = load_network(bundle / "segmenter.safetensors", "segmenter")
root, scenes, _ = mixing_pairs(data); scenes = scenes[:8]
r = G.cfg.img_resolution
imgs = torch.stack([load_image(root / "images/validation" / f"{s}.png", r) for s in scenes])
maps = torch.stack([torch.from_numpy(load_seg(root / "annotations/validation" / f"{s}.png", r).astype("int64")) for s in scenes])
with torch.no_grad():
    inv = invert(G, net, imgs, one_hot_seg(maps), steps=5)
    pairs = [(a, b) for a in range(8) for b in range(8) if a != b]
    ia = [a for a, _ in pairs]; ib = [b for _, b in pairs]
    new = one_hot_seg(maps[ib]); w = inv.w[ia]
    seg_lat = net.seg_encoder(new, G); ws = compose_ws(G, w, seg_lat)
    out = {"y0 (encoders only, B's map)": render(G, ws)}
    for name, d_img in (("refined, A's delta_img kept", {k: v[ia] for k, v in inv.delta_img.items()}), ("refined, delta_img dropped", None)):
        y = render(G, ws, d_img); d_seg = None; di = d_img
        for t in range(5):
            di2, d_seg, y = refine_step(G, net, None, new, ws, di, d_seg, y)
            di = di2 if d_img is not None else None
        out[name] = y
    for name, y in out.items():
        cm = confusion_matrix(seg_net.predict(y.clamp(-1, 1)), maps[ib], 151)
        print(f"{name:35s} mIoU {segmentation_scores(cm)['miou']:.3f}")
    cm = confusion_matrix(seg_net.predict(inv.images[ia].clamp(-1, 1)), maps[ib], 151)
    print(f"{'A reconstruction (map ignored)':35s} mIoU {segmentation_scores(cm)['miou']:.3f}")
    # References: what the segmenter reads from B itself and from B's own reconstruction (an edit can hardly
    # draw B's layout better than inverting B does).
    for name, y in (("B input (segmenter ceiling)", imgs[ib]), ("B reconstruction", inv.images[ib])):
        cm = confusion_matrix(seg_net.predict(y.clamp(-1, 1)), maps[ib], 151)
        print(f"{name:35s} mIoU {segmentation_scores(cm)['miou']:.3f}")
