"""Evaluate inversion networks: reconstruction per refinement step, and style/content mixing against ground truth.

- `reconstruction_scores(G, net, dataset, ...)`: invert the first `num` items of an ADE20K-layout split with
  `steps` refinement steps and score y_0 .. y_steps against the inputs (L2 on [-1, 1], PSNR and MS-SSIM on
  [0, 1], LPIPS when a network is given; `bgedit_cli.metrics.pairwise`). Also returns the columns of a sample
  grid (input | y_0 | ... | y_steps).
- `mixing_scores(G, net, root, ...)`: the synthetic renderer (`bgedit data synth`) writes, for the first M
  validation scenes, `ROOT/mixing/validation/{a}__{b}.png` = render(content of a, style of b). Every scene of
  those pairs is inverted from `images/validation/{a}.png` with its ground-truth map `annotations/validation/
  {a}.png`; then for every ordered pair a != b
    - style mixing `mix_style(a, b)` is scored against `{a}__{b}.png`,
    - content mixing `mix_content(a, b)` (A's style, B's content) against `{b}__{a}.png`,
  next to trivial answers scored against the same ground truth: A's and B's reconstructions (`recon_a`,
  `recon_b`) and the input images themselves (`input_a`, `input_b`). A mixing method is useful only where it
  beats the trivial answers. Every option of the mixing functions is scored (style: `delta_img` from A or from
  B; content: `swap_deltas` seg / all / none), so the benchmark picks the defaults.
  The baseline variant (no seg latents) has no `mix_style`/`mix_content`; it is scored with the plain StyleGAN
  W+ row swap at the proposed model's split (its `seg_layers`; `default_seg_layers` without one): style = A's
  rows below the split, B's rows from it on, A's deltas; content = B's rows below the split, A's from it on,
  A's deltas.

Functions only: no printing, no files written (bgedit evaluate reports).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import torch

from bgedit_cli.errors import InputError
from bgedit_cli.io import load_image, load_seg, one_hot_seg
from bgedit_cli.latent import Inversion
from bgedit_cli.metrics.pairwise import ms_ssim_label, pairwise_metrics
from bgedit_cli.metrics.segmentation import confusion_matrix, segmentation_scores
from bgedit_cli.nn.inversion import default_seg_layers
from bgedit_cli.pipelines.invert import invert, render
from bgedit_cli.pipelines.mix import edit_layout, mix_content, mix_style

MIX_NAME = re.compile(r"^(?P<a>.+)__(?P<b>.+)\.png$")


def _score(x: torch.Tensor, y: torch.Tensor, lpips_net=None) -> dict[str, torch.Tensor]:
    """Per-image metrics of x against y ([N] each; metrics on CPU, LPIPS on the network's device)."""
    out = pairwise_metrics(x.float().cpu(), y.float().cpu())
    if lpips_net is not None:
        device = next(lpips_net.parameters()).device
        out["lpips"] = lpips_net(x.float().to(device), y.float().to(device)).cpu()
    return out


class _Mean:
    """Running means of per-image metric values, by group and metric."""

    def __init__(self) -> None:
        self.sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, group: str, values: dict[str, torch.Tensor]) -> None:
        n = next(iter(values.values())).shape[0]
        for k, v in values.items():
            self.sums[group][k] += float(v.double().sum())
        self.counts[group] += n

    def result(self, group: str) -> dict[str, float]:
        return {k: s / self.counts[group] for k, s in self.sums[group].items()}


@torch.no_grad()
def reconstruction_scores(G, net, dataset, *, num: int, steps: int = 5, batch_size: int = 8,
                          device: torch.device | str = "cpu", grid_images: int = 8, lpips_net=None,
                          progress: Callable[[int, int], None] | None = None
                          ) -> tuple[dict[str, Any], list[torch.Tensor]]:
    """Scores of y_0 .. y_steps on the first `num` items of `dataset` (ADE20KDataset; its maps are used by the
    proposed variant). Returns ({"per_step": [{metric: mean}, ...], "final": {...}, "images": n,
    "ms_ssim_variant": label}, grid columns [input, y_0, ..., y_steps] of the first `grid_images`)."""
    num = min(num, len(dataset))
    if num < 1:
        raise InputError("no images to evaluate.")
    means = _Mean()
    grid: list[list[torch.Tensor]] = [[] for _ in range(steps + 2)]
    shown = 0
    for start in range(0, num, batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, num))]
        img = torch.stack([it["img"] for it in items]).to(device)
        seg = one_hot_seg(torch.stack([it["seg"] for it in items]).to(device)) if net.uses_seg else None
        inv = invert(G, net, img, seg, steps=steps, return_steps=True)
        for t, y in enumerate(inv.steps_images):
            means.add(f"y{t}", _score(y, img, lpips_net))
        if shown < grid_images:
            k = min(grid_images - shown, img.shape[0])
            grid[0].append(img[:k].cpu())
            for t, y in enumerate(inv.steps_images):
                grid[t + 1].append(y[:k].float().cpu())
            shown += k
        if progress is not None:
            progress(min(start + batch_size, num), num)
    per_step = [means.result(f"y{t}") for t in range(steps + 1)]
    scores = {"per_step": per_step, "final": per_step[-1], "images": num, "steps": steps,
              "ms_ssim_variant": ms_ssim_label(G.cfg.img_resolution)}
    return scores, [torch.cat(col) for col in grid] if shown else []


def mixing_pairs(root: Path) -> tuple[Path, list[str], dict[tuple[str, str], Path]]:
    """(dataset root, scenes, {(a, b): GT path}) from `ROOT/mixing/validation/{a}__{b}.png`; InputError if there
    are none or a scene's image or map is missing."""
    root = Path(root)
    if not (root / "images").is_dir() and (root / "ADEChallengeData2016" / "images").is_dir():
        root = root / "ADEChallengeData2016"
    folder = root / "mixing" / "validation"
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder. The mixing benchmark needs ground truth from the synthetic "
                         "renderer: `bgedit data synth --out DIR` writes it (with --mixing-pairs M > 1).")
    pairs: dict[tuple[str, str], Path] = {}
    for p in sorted(folder.iterdir()):
        m = MIX_NAME.match(p.name)
        if m:
            pairs[(m.group("a"), m.group("b"))] = p
    scenes = sorted({s for ab in pairs for s in ab})
    if not any(a != b for a, b in pairs):
        raise InputError(f"{folder}: no {{a}}__{{b}}.png pairs of two different scenes.")
    for s in scenes:
        for sub, what in (("images", "image"), ("annotations", "map")):
            if not (root / sub / "validation" / f"{s}.png").is_file():
                raise InputError(f"{root / sub / 'validation' / (s + '.png')}: the {what} of mixing scene {s} is "
                                 "missing.")
    return root, scenes, pairs


def _row_swap(G, inv_a, inv_b, split: int, take: str) -> torch.Tensor:
    """Baseline mixing: W+ rows < split from one inversion, >= split from the other; A's deltas."""
    low, high = (inv_a, inv_b) if take == "style" else (inv_b, inv_a)
    ws = torch.cat([low.ws[:, :split], high.ws[:, split:]], dim=1)
    return render(G, ws, inv_a.weight_deltas())


@torch.no_grad()
def mixing_scores(G, net, root: Path, *, steps: int = 5, batch_size: int = 8, device: torch.device | str = "cpu",
                  max_scenes: int | None = None, lpips_net=None, row_split: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Mixing error against the synthetic ground truth (module doc). `row_split`: the baseline's W+ row swap
    index (default: the proposed model's `seg_layers` when evaluated alongside, else `default_seg_layers`).
    Returns {"scenes", "pairs", "steps", "method", "style": {answer: {metric: mean}}, "content": {...}}."""
    data_root, scenes, pairs = mixing_pairs(Path(root))
    if max_scenes is not None:
        scenes = scenes[:max_scenes]
    keep = set(scenes)
    todo = [(a, b) for (a, b) in pairs if a != b and a in keep and b in keep and (b, a) in pairs]
    if not todo:
        raise InputError(f"{root}: no scene pair with both {{a}}__{{b}}.png and {{b}}__{{a}}.png.")
    r = G.cfg.img_resolution

    # Invert every scene once.
    images = torch.stack([load_image(data_root / "images" / "validation" / f"{s}.png", r) for s in scenes])
    invs = []
    for start in range(0, len(scenes), batch_size):
        img = images[start:start + batch_size].to(device)
        seg = None
        if net.uses_seg:
            ids = [torch.from_numpy(load_seg(data_root / "annotations" / "validation" / f"{s}.png", r).astype("int64"))
                   for s in scenes[start:start + batch_size]]
            seg = one_hot_seg(torch.stack(ids).to(device))
        invs.append(invert(G, net, img, seg, steps=steps))
    inv = Inversion.cat(invs)
    index = {s: i for i, s in enumerate(scenes)}
    split = net.seg_layers if net.uses_seg else (row_split or default_seg_layers(G.num_ws, r))

    means = _Mean()
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        ia = [index[a] for a, _ in chunk]
        ib = [index[b] for _, b in chunk]
        inv_a = Inversion.cat([inv.select(i) for i in ia]).to(device)
        inv_b = Inversion.cat([inv.select(i) for i in ib]).to(device)
        gt_style = torch.stack([load_image(pairs[(a, b)], r) for a, b in chunk])
        gt_content = torch.stack([load_image(pairs[(b, a)], r) for a, b in chunk])
        answers_style: dict[str, torch.Tensor] = {}
        answers_content: dict[str, torch.Tensor] = {}
        if net.uses_seg:
            for src in ("a", "b"):
                answers_style[f"mix_style(delta_img={src})"] = mix_style(G, inv_a, inv_b, take_delta_img=src)
            for swap in ("seg", "all", "none"):
                answers_content[f"mix_content(swap_deltas={swap})"] = mix_content(G, inv_a, inv_b, swap_deltas=swap)
        else:
            answers_style["w+ row swap"] = _row_swap(G, inv_a, inv_b, split, "style")
            answers_content["w+ row swap"] = _row_swap(G, inv_a, inv_b, split, "content")
        trivial = {"recon_a": inv.images[ia], "recon_b": inv.images[ib], "input_a": images[ia],
                   "input_b": images[ib]}
        for name, y in {**answers_style, **trivial}.items():
            means.add(f"style/{name}", _score(y, gt_style, lpips_net))
        for name, y in {**answers_content, **trivial}.items():
            means.add(f"content/{name}", _score(y, gt_content, lpips_net))
        if progress is not None:
            progress(min(start + batch_size, len(todo)), len(todo))
    out: dict[str, Any] = {"scenes": len(scenes), "pairs": len(todo), "steps": steps, "split": split,
                           "method": "proposed mix_style/mix_content" if net.uses_seg else
                           f"baseline: W+ row swap at {split}, A's deltas"}
    for task in ("style", "content"):
        out[task] = {g.split("/", 1)[1]: means.result(g) for g in means.counts if g.startswith(task + "/")}
    return out


@torch.no_grad()
def read_maps(segmenter, img: torch.Tensor, resolution: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The segmenter's class ids [N, R, R] (on the CPU) of images [N, 3, R, R], at `resolution` (nearest)."""
    pred = segmenter.predict(img.to(device).float().clamp(-1, 1))
    if pred.shape[-1] != resolution:
        pred = torch.nn.functional.interpolate(pred[:, None].float(), size=(resolution, resolution),
                                               mode="nearest")[:, 0].long()
    return pred.cpu()


def layout_scores(G, net, segmenter, root: Path, *, steps: int = 5, batch_size: int = 8,
                  device: torch.device | str = "cpu", max_scenes: int | None = None) -> dict[str, Any]:
    """Does the seg map steer the layout? For every ordered pair (A, B), A != B, of the validation scenes that
    have mixing ground truth (the first `max_scenes`): A is inverted with its own map, then edited with B's map
    (`edit_layout`); the segmenter reads the edit back and the pixels of all pairs are scored against B's map
    (standard mIoU: per-class IoU over all pixels, mean over the classes present). Next to it: the segmenter on
    B's own input (how well it reads these scenes at all), on B's own reconstruction (how much of B's layout the
    generator draws when inverting B itself: what an edit can hardly beat) and on A's reconstruction (what
    ignoring the new map scores). Returns {"scenes", "pairs", "steps", "edit", "b_input", "b_reconstruction",
    "a_reconstruction"}, each a dict of scores."""
    if not net.uses_seg:
        raise InputError("layout edits need the proposed variant.")
    data_root, scenes, _ = mixing_pairs(Path(root))
    scenes = scenes[:max_scenes] if max_scenes is not None else scenes
    if len(scenes) < 2:
        raise InputError(f"{root}: layout edits need 2 or more scenes with mixing ground truth.")
    r = G.cfg.img_resolution
    images = torch.stack([load_image(data_root / "images" / "validation" / f"{s}.png", r) for s in scenes])
    maps = torch.stack([torch.from_numpy(load_seg(data_root / "annotations" / "validation" / f"{s}.png", r)
                                         .astype("int64")) for s in scenes])
    invs = [invert(G, net, images[i:i + batch_size].to(device), one_hot_seg(maps[i:i + batch_size].to(device)),
                   steps=steps) for i in range(0, len(scenes), batch_size)]
    inv = Inversion.cat(invs)

    def read(img: torch.Tensor) -> torch.Tensor:
        return read_maps(segmenter, img, r, device)

    n = segmenter.cfg.num_classes
    cm = {k: torch.zeros(n, n, dtype=torch.long) for k in ("edit", "b_input", "b_reconstruction", "a_reconstruction")}
    pairs = [(a, b) for a in range(len(scenes)) for b in range(len(scenes)) if a != b]
    recon_read = read(inv.images)
    input_read = read(images)
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        ia, ib = [a for a, _ in chunk], [b for _, b in chunk]
        inv_a = Inversion.cat([inv.select(i) for i in ia]).to(device)
        edited = edit_layout(G, net, inv_a, one_hot_seg(maps[ib].to(device)), steps=steps)
        target = maps[ib]
        cm["edit"] += confusion_matrix(read(edited.images), target, n)
        cm["b_input"] += confusion_matrix(input_read[ib], target, n)
        cm["b_reconstruction"] += confusion_matrix(recon_read[ib], target, n)
        cm["a_reconstruction"] += confusion_matrix(recon_read[ia], target, n)
    return {"scenes": len(scenes), "pairs": len(pairs), "steps": steps,
            **{k: segmentation_scores(v) for k, v in cm.items()}}
