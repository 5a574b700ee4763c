"""Evaluation of a model bundle, or of two folders of images, as functions returning plain data (`bgedit evaluate`).

    ev = evaluate_bundle(EvalOptions(data=DATA, model=BUNDLE, metrics=("l2", "fid")), progress=callback)
    ev = evaluate_folders(EvalOptions(real=DIR_A, fake=DIR_B, paired=True))
    ev.result    # JSON-able: settings, notes, metrics per table row (MetricResult dicts), per-step scores,
                 # mixing and text-edit scores, seconds per stage
    ev.figures   # name -> Figure (with figures=True): the report's image grids
    ev.images    # row -> (names, uint8 [N, 3, R, R]): the reconstructions (bundle mode)

Bundle mode (`data`): the first `limit` images of the split (sorted by name) are inverted by each variant of the
bundle with `steps` refinement steps; the proposed variant reads the ground-truth annotations as its seg maps.
Per variant (one row of the paper's Table 1):
- pairwise metrics of the final reconstruction against the input at the model resolution, as HyperInverter
  evaluates: l2 and lpips on [-1, 1], psnr and ms_ssim on [0, 1], per image and averaged; every refinement step
  y_0 .. y_steps too (`reconstruction`). `evaluate_mixing.reconstruction_scores` computes them, chunk by chunk;
- distribution metrics of the reconstructions against the inputs, both as uint8 images: fid and kid (x 1e3,
  torch-fidelity's Inception, `metrics.distribution.inception_metrics`), fd_clip (the bundle's CLIP, or `clip`;
  labelled with its hash and comparable to published numbers only with OpenAI's ViT-B/32) and swd
  (`metrics.swd`, x 1e3, the mean over pyramid levels);
- with `DATA/mixing/validation/` ground truth: `evaluate_mixing.mixing_scores` (style and content mixing next to
  the trivial answers).
With `DATA/textedit/validation/{scene}__{style}.png` ground truth and a text model (`BUNDLE/text.safetensors`, or
`text`): `evaluate_text.text_result`. Every ground-truth scene is inverted (the proposed variant, else the
baseline) and edited toward each trained prompt that is a synthetic style name (alpha and strength from the text
model, eps from `seed`); pairs whose style is the scene's own (`metadata.jsonl`) are left out. Per edit setting
(the model's alpha; with a Text Encoder also alpha = 1, the mapper alone, the comparison of the paper's Fig. 8):
`closer`, both mean L2s, `improvement`, `clip_gain` and `clip_rise` per style and overall; the layout kept (mIoU of
the segmenter's maps of edit vs reconstruction); "ocean" on the first `ocean_scenes` validation scenes without
sea (share whose water fraction rises); unseen wordings of the styles and a shuffled-prompt control against the
same ground truth.

Folder mode (`real`, `fake`): every image of both folders, resized and centre-cropped to `resolution` (default:
the shorter side of the first fake image, by name) with `bgedit_cli.io`'s rule; distribution metrics on all of
them; pairwise metrics only with `paired`, on the files whose name stems match (the others are listed).

A metric whose weights are missing (Inception, AlexNet, a CLIP), or that has too few images, comes back
unavailable with the reason (`MetricResult`); the others are still computed. Nothing here prints or writes.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import json
import platform
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Subset

from bgedit_cli import __version__
from bgedit_cli.bundle import BUNDLE_FILES, resolve_bundle
from bgedit_cli.checkpoint import file_sha256, read_header
from bgedit_cli.data.ade20k import ADE20KDataset
from bgedit_cli.data.synth import STYLE_NAMES
from bgedit_cli.errors import CheckpointError, InputError
from bgedit_cli.io import IMAGE_SUFFIXES, colorize_seg, load_image, one_hot_seg, open_image, to_uint8
from bgedit_cli.latent import Inversion
from bgedit_cli.losses.lpips import MIN_SIZE as LPIPS_MIN_SIZE, build_lpips
from bgedit_cli.weights import MissingWeightsError
from bgedit_cli.metrics.distribution import KID_SCALE, MetricResult, fd_clip, inception_metrics
from bgedit_cli.metrics.features import clip_features, find_inception
from bgedit_cli.metrics.pairwise import ms_ssim_label, pairwise_metrics
from bgedit_cli.metrics.swd import SWD_SCALE, SWDReference, SWDSettings
from bgedit_cli.nn.inversion import VARIANTS
from bgedit_cli.pipelines.evaluate_mixing import layout_scores, mixing_scores, reconstruction_scores
from bgedit_cli.pipelines.evaluate_text import (OCEAN_SCENES, invert_files as _invert_files, load_text_model,
                                                one_line, take as _take, text_alphas, text_result)
from bgedit_cli.pipelines.mix import edit_layout, mix_content, mix_style
from bgedit_cli.pipelines.models import Models, load_clip, load_models
from bgedit_cli.pipelines.text_edit import text_edit
from bgedit_cli.runtime import resolve_device

# Table 1's columns first (the paper's order), then ours; True where lower is better.
LOWER_IS_BETTER = {"l2": True, "lpips": True, "fid": True, "kid": True, "psnr": False, "ms_ssim": False,
                   "fd_clip": True, "swd": True}
METRICS = tuple(LOWER_IS_BETTER)
PAIRWISE = ("l2", "lpips", "psnr", "ms_ssim")
VALUE_RANGES = {"l2": "[-1, 1]", "lpips": "[-1, 1]", "psnr": "[0, 1]", "ms_ssim": "[0, 1]"}
RESIZE = "largest centred square, PIL bicubic (antialiased) to R x R; seg maps nearest (bgedit_cli.io)"
PACKAGES = ("torch", "torchvision", "torch-fidelity", "numpy", "scipy", "pillow", "lpips", "pytorch-msssim",
            "clip-anytorch")
FIGURE_ROWS = 6  # images in the reconstruction and text-edit figures
FIGURE_SCENES = 4  # scenes of the mixing and layout figures (rows x columns)
FIGURE_PROMPTS = 8  # prompts shown in the text-edit figures
CHUNK_BATCHES = 8  # reconstruction_scores is called on chunks of this many batches

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclasses.dataclass
class EvalOptions:
    """What `bgedit evaluate` was asked; `data` (bundle mode) or `real` + `fake` (folder mode)."""

    metrics: tuple[str, ...] = METRICS
    batch_size: int = 8
    device: str = "auto"
    precision: str = "fp32"  # of the bundle's networks (inversion, edits); metric features always run in fp32
    seed: int = 0
    inception: Path | None = None
    alexnet: Path | None = None
    clip: Path | None = None
    model: Path | None = None
    figures: bool = False
    # Bundle mode.
    data: Path | None = None
    split: str = "validation"
    variants: tuple[str, ...] | None = None  # None: every variant the bundle has
    inversion: Path | None = None  # scored instead of the bundle's file of its variant
    text: Path | None = None  # text model scored instead of BUNDLE/text.safetensors
    ocean_scenes: int = OCEAN_SCENES  # validation scenes without sea edited with "ocean" (text section)
    steps: int = 5
    limit: int | None = None
    mixing_scenes: int = 8
    # Folder mode.
    real: Path | None = None
    fake: Path | None = None
    paired: bool = False
    resolution: int | None = None


@dataclasses.dataclass
class Figure:
    """An image grid of the report: `columns`, each [rows, 3, R, R] in [-1, 1] (`bgedit_cli.io.image_columns`)."""

    title: str
    columns: list[torch.Tensor]
    column_labels: list[str]
    row_labels: list[str]
    caption: str = ""


@dataclasses.dataclass
class Evaluation:
    result: dict[str, Any]
    figures: dict[str, Figure] = dataclasses.field(default_factory=dict)
    images: dict[str, tuple[list[str], torch.Tensor]] = dataclasses.field(default_factory=dict)


def parse_names(text: str, known: Sequence[str], option: str) -> tuple[str, ...]:
    """`"ms-ssim, l2"` -> ("l2", "ms_ssim") (in the order of `known`: tables keep Table 1's column order),
    `"all"` -> `known`; unknown or no names are an InputError naming the known ones."""
    if text.strip().lower() == "all":
        return tuple(known)
    names = {n.strip().lower().replace("-", "_") for n in text.split(",") if n.strip()}
    unknown = sorted(n for n in names if n not in known)
    if unknown or not names:
        what = f"unknown {', '.join(unknown)}" if unknown else "no names"
        raise InputError(f"{option} {text!r}: {what}; choose from {', '.join(known)} (comma-separated) or all.")
    return tuple(n for n in known if n in names)


def library_versions() -> dict[str, str | None]:
    """Versions of what the numbers depend on (torch's with its build tag, e.g. +cu130)."""
    out: dict[str, str | None] = {"bgedit": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["torch"] = torch.__version__
    return out


@functools.lru_cache(maxsize=None)
def _sha256(path: str) -> str:
    return file_sha256(Path(path))


def _u8(img: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] in [-1, 1] -> uint8 [N, 3, H, W] (what a PNG of it holds)."""
    return torch.from_numpy(to_uint8(img)).permute(0, 3, 1, 2).contiguous()


def _unit(img: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> float [N, 3, H, W] in [-1, 1]."""
    return img.float() / 127.5 - 1


# ----------------------------------------------------------------------------------------------------------
# Metrics shared by both modes.


def pairwise_results(values: dict[str, float], metrics: Sequence[str], resolution: int, num: int,
                     lpips_reason: str | None) -> dict[str, MetricResult]:
    """MetricResults of the requested pairwise metrics from their per-image means (lpips absent: its reason)."""
    out = {}
    for name in (m for m in PAIRWISE if m in metrics):
        settings: dict[str, Any] = {"value_range": VALUE_RANGES[name], "resolution": resolution, "num": num,
                                    "reduction": "mean over images"}
        if name == "ms_ssim":
            settings["computed"] = ms_ssim_label(resolution)
        if name in values:
            out[name] = MetricResult(name, float(values[name]), settings=settings)
        else:
            out[name] = MetricResult.unavailable(name, lpips_reason or "not computed", settings)
    return out


def metric_networks(opts: EvalOptions, bundle: Path, device: torch.device, resolution: int) -> dict[str, Any]:
    """LPIPS network and CLIP for the requested metrics, or the reason each is unavailable; the weight files."""
    nets: dict[str, Any] = {"lpips": None, "lpips_reason": None, "clip": None, "clip_reason": None, "weights": {}}
    if "lpips" in opts.metrics:
        if resolution < LPIPS_MIN_SIZE:
            nets["lpips_reason"] = (f"LPIPS-Alex needs images of at least {LPIPS_MIN_SIZE}x{LPIPS_MIN_SIZE} px; "
                                    f"these are {resolution} px.")
        else:
            try:
                nets["lpips"] = build_lpips(opts.alexnet, device)
                nets["weights"]["alexnet"] = _weight_info(nets["lpips"].alexnet_path)
                nets["weights"]["lpips_linear"] = _weight_info(nets["lpips"].linear_path)
            except MissingWeightsError as exc:  # find_weights' closing hint is about training: replaced
                nets["lpips_reason"] = one_line(exc).replace(
                    "Presets tiny and demo train without it.", "Without it LPIPS is unavailable (no other network "
                    "can stand in).")
    if "fd_clip" in opts.metrics:
        try:
            nets["clip"] = load_clip(bundle, opts.clip, device)
            nets["weights"]["clip"] = {"file": nets["clip"].name, "sha256": nets["clip"].sha256}
        except MissingWeightsError as exc:
            nets["clip_reason"] = one_line(exc)
    if {"fid", "kid"} & set(opts.metrics):
        try:
            nets["weights"]["inception"] = _weight_info(find_inception(opts.inception))
        except MissingWeightsError:
            nets["weights"]["inception"] = None
    return nets


def _weight_info(path: Path) -> dict[str, str]:
    return {"file": str(path), "sha256": _sha256(str(path))}


class DistributionScorer:
    """Distribution metrics of fake image sets against one real set (uint8 [N, 3, R, R] each); the real side's
    CLIP features and SWD descriptors are computed once, for every fake set."""

    def __init__(self, real: torch.Tensor, opts: EvalOptions, nets: dict[str, Any], device: torch.device) -> None:
        self.real, self.opts, self.nets, self.device = real, opts, nets, device
        self.swd_settings = SWDSettings(seed=opts.seed)
        self._clip_real: torch.Tensor | None = None
        self._swd_ref: SWDReference | None = None

    def __call__(self, fake: torch.Tensor, progress: Progress | None = None, stage: str = ""
                 ) -> tuple[dict[str, MetricResult], dict[str, float]]:
        """({metric: MetricResult}, {metric: seconds})."""
        metrics, out, seconds = self.opts.metrics, {}, {}
        inception = [m for m in ("fid", "kid") if m in metrics]
        if inception:
            t = time.perf_counter()
            done = [0]

            def step(n: int) -> None:
                done[0] += n
                if progress is not None:
                    progress(f"{stage}inception", done[0], len(self.real) + len(fake))

            results = inception_metrics(self.real, fake, metrics=inception, weights=self.opts.inception,
                                        batch_size=self.opts.batch_size, device=self.device, seed=self.opts.seed,
                                        progress=step)
            for name, res in results.items():
                if res.available:
                    res.settings["weights_sha256"] = _sha256(res.settings["weights"])
                out[name] = res
            seconds["fid+kid"] = time.perf_counter() - t
        if "fd_clip" in metrics:
            t = time.perf_counter()
            out["fd_clip"] = self._fd_clip(fake)
            seconds["fd_clip"] = time.perf_counter() - t
        if "swd" in metrics:
            t = time.perf_counter()
            out["swd"] = self._swd(fake)
            seconds["swd"] = time.perf_counter() - t
        return out, seconds

    def _fd_clip(self, fake: torch.Tensor) -> MetricResult:
        clip = self.nets["clip"]
        if clip is None:
            return MetricResult.unavailable("fd_clip", self.nets["clip_reason"])
        bs = self.opts.batch_size
        if self._clip_real is None:
            self._clip_real = clip_features(self.real, clip.model, batch_size=bs)
        return fd_clip(self._clip_real, clip_features(fake, clip.model, batch_size=bs), weights_sha256=clip.sha256,
                       weights_name=clip.name)

    def _swd(self, fake: torch.Tensor) -> MetricResult:
        n = min(len(self.real), len(fake))
        settings = {**self.swd_settings.to_dict(), "scale": SWD_SCALE, "value_range": "uint8 levels", "num": n,
                    "reduction": "mean over pyramid levels"}
        if len(self.real) != len(fake):
            settings["note"] = f"sets of {len(self.real)} and {len(fake)} images: the first {n} of each (by name)"
        try:
            if self._swd_ref is None or self._swd_ref.num_images != n:
                self._swd_ref = SWDReference(_unit(self.real[:n]), self.swd_settings)
            levels = self._swd_ref(_unit(fake[:n]))
        except ValueError as exc:
            return MetricResult.unavailable("swd", str(exc), settings)
        return MetricResult("swd", levels.pop("swd/avg"), settings={**settings, "levels": levels})


def _common_settings(opts: EvalOptions, device: torch.device, resolution: int, num: int,
                     nets: dict[str, Any]) -> dict[str, Any]:
    return {"metrics": list(opts.metrics), "num_images": num, "resolution": resolution, "resize": RESIZE,
            "seed": opts.seed, "kid_subset_size": min(1000, num), "kid_subsets": 100, "kid_scale": KID_SCALE,
            "swd": {**SWDSettings(seed=opts.seed).to_dict(), "scale": SWD_SCALE}, "batch_size": opts.batch_size,
            "device": str(device), "threads": torch.get_num_threads(), "machine": platform.machine(),
            "weights": nets["weights"], "versions": library_versions()}


# ----------------------------------------------------------------------------------------------------------
# Bundle mode.


def _bundle(model: Path | None) -> Path:
    bundle = resolve_bundle(model)
    if not bundle.is_dir():
        raise InputError(f"{bundle}: no such model bundle folder; pass --model DIR (a folder holding "
                         "generator.safetensors, inversion.safetensors, ...) or install the demo bundle with "
                         "`make demo`.")
    return bundle


def variant_files(bundle: Path, variants: Sequence[str] | None, inversion: Path | None
                  ) -> tuple[dict[str, Path], list[str]]:
    """({variant: inversion file}, notes on variants skipped). A variant asked for explicitly must exist."""
    files, notes = {}, []
    wanted = VARIANTS if variants is None else variants
    if inversion is not None:
        if not Path(inversion).is_file():
            raise InputError(f"--inversion {inversion}: no such file.")
        meta, _ = read_header(Path(inversion), "inversion")
        variant = json.loads(meta["bgedit.config"]).get("variant")
        if variants is not None and variant not in variants:
            raise InputError(f"--inversion {inversion} holds the {variant} variant, which --variants "
                             f"{','.join(variants)} leaves out.")
        files[variant] = Path(inversion)
        wanted = (variant,) if variants is None else variants
    for v in (v for v in wanted if v not in files):
        path = bundle / BUNDLE_FILES["inversion" if v == "proposed" else "inversion-baseline"]
        if path.is_file():
            files[v] = path
        elif variants is not None:
            raise CheckpointError(f"{path}: no {v} inversion network, but --variants asks for it. Train it with "
                                  f"`bgedit train inversion --variant {v} --model {bundle}`.")
        else:
            notes.append(f"{v}: {path} not found, skipped (train it with `bgedit train inversion --variant {v}`).")
    if not files:
        raise CheckpointError(f"{bundle}: no inversion network (inversion.safetensors or "
                              "inversion-baseline.safetensors). Train one with `bgedit train inversion --model "
                              f"{bundle}` (or pass --model to another bundle).")
    return {v: files[v] for v in VARIANTS if v in files}, notes


def _reconstruct(m: Models, dataset: ADE20KDataset, num: int, opts: EvalOptions, lpips_net, stage: str,
                 progress: Progress | None) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """`reconstruction_scores` on the first `num` items in chunks (the same numbers as one call, without holding
    every step of every image): (scores, inputs uint8, final reconstructions uint8, the first FIGURE_ROWS rows
    of the columns [input, y_0, ..., y_steps])."""
    chunk = opts.batch_size * CHUNK_BATCHES
    parts, inputs, finals, shown = [], [], [], []
    for start in range(0, num, chunk):
        stop = min(start + chunk, num)
        report = None if progress is None else (lambda done, _, s=start: progress(stage, s + done, num))
        scores, cols = reconstruction_scores(m.generator, m.net, Subset(dataset, range(start, stop)),
                                             num=stop - start, steps=opts.steps, batch_size=opts.batch_size,
                                             device=m.device, grid_images=stop - start, lpips_net=lpips_net,
                                             progress=report)
        parts.append((stop - start, scores["per_step"]))
        inputs.append(_u8(cols[0]))
        finals.append(_u8(cols[-1]))
        shown = shown or [c[:FIGURE_ROWS] for c in cols]
    per_step = [{k: sum(n * steps[t][k] for n, steps in parts) / num for k in parts[0][1][t]}
                for t in range(opts.steps + 1)]
    scores = {"per_step": per_step, "final": per_step[-1], "images": num, "steps": opts.steps,
              "ms_ssim_variant": ms_ssim_label(m.resolution)}
    return scores, torch.cat(inputs), torch.cat(finals), shown


def evaluate_bundle(opts: EvalOptions, progress: Progress | None = None) -> Evaluation:
    """Bundle mode (module doc)."""
    seconds: dict[str, float] = {}
    notes: list[str] = []

    # Data, models and the text model, all checked before any work.
    if opts.data is None or not Path(opts.data).is_dir():
        raise InputError(f"--data {opts.data}: no such folder; give a dataset in the ADE20K layout (e.g. from "
                         "`bgedit data synth --out DIR`).")
    bundle = _bundle(opts.model)
    files, skipped = variant_files(bundle, opts.variants, opts.inversion)
    notes += skipped
    models = {v: load_models(bundle, v, opts.device, inversion=path, precision=opts.precision)
              for v, path in files.items()}
    first = next(iter(models.values()))
    device, r = first.device, first.resolution
    dataset = ADE20KDataset(opts.data, opts.split, resolution=r, flip=False,
                            require_seg=any(m.net.uses_seg for m in models.values()))
    num = len(dataset) if opts.limit is None else min(opts.limit, len(dataset))
    text_variant = "proposed" if "proposed" in models else next(iter(models))
    text = load_text_model(bundle, models[text_variant], opts.clip, opts.text)
    nets = metric_networks(opts, bundle, device, r)

    # Reconstruction, pairwise and distribution metrics per variant.
    rows, recon, images, shown = {}, {}, {}, {}
    scorer = None
    for v, m in models.items():
        t = time.perf_counter()
        recon[v], real, fake, shown[v] = _reconstruct(m, dataset, num, opts, nets["lpips"], f"inverting ({v})",
                                                      progress)
        seconds[f"inversion+pairwise/{v}"] = time.perf_counter() - t
        images[v] = (dataset.names[:num], fake)
        rows[v] = pairwise_results(recon[v]["final"], opts.metrics, r, num, nets["lpips_reason"])
        scorer = scorer or DistributionScorer(real, opts, nets, device)
        dist, secs = scorer(fake, progress, f"{v}: ")
        rows[v].update(dist)
        seconds.update({f"{k}/{v}": s for k, s in secs.items()})

    # Mixing against the synthetic ground truth.
    root = dataset.root
    if not (root / "mixing" / "validation").is_dir():
        mixing: dict[str, Any] = {"skipped": "no DATA/mixing/validation ground truth (synthetic data only)"}
    elif opts.mixing_scenes < 2:
        mixing = {"skipped": f"--mixing-scenes {opts.mixing_scenes} (needs 2 or more)"}
    else:
        mixing = {}
        split = next((m.net.seg_layers for m in models.values() if m.net.uses_seg), None)
        for v, m in models.items():
            t = time.perf_counter()
            try:
                mixing[v] = mixing_scores(m.generator, m.net, root, steps=opts.steps, batch_size=opts.batch_size,
                                          device=device, max_scenes=opts.mixing_scenes, lpips_net=nets["lpips"],
                                          row_split=split)
            except InputError as exc:
                mixing = {"skipped": one_line(exc)}
                break
            seconds[f"mixing/{v}"] = time.perf_counter() - t

    # Layout edits: does B's map steer A's edit? (proposed variant, read back by the bundle's segmenter)
    layout: dict[str, Any]
    if "proposed" not in models or "skipped" in mixing:
        layout = {"skipped": "needs the proposed variant and DATA/mixing/validation scenes"}
    else:
        t = time.perf_counter()
        m = models["proposed"]
        try:
            layout = layout_scores(m.generator, m.net, m.segmenter(), root, steps=opts.steps,
                                   batch_size=opts.batch_size, device=device, max_scenes=opts.mixing_scenes)
        except (InputError, CheckpointError) as exc:
            layout = {"skipped": one_line(exc)}
        seconds["layout"] = time.perf_counter() - t

    # Text edits against the synthetic ground truth.
    t = time.perf_counter()
    text_scores = text_result(text, models[text_variant], root, steps=opts.steps, batch_size=opts.batch_size,
                              seed=opts.seed, ocean_scenes=opts.ocean_scenes, progress=progress)
    seconds["text"] = time.perf_counter() - t

    settings = {"mode": "bundle", "data": str(Path(opts.data).resolve()), "split": opts.split,
                "first_image": dataset.names[0], "last_image": dataset.names[num - 1],
                "model": str(bundle.resolve()), "generator_sha256": first.generator_sha256, "steps": opts.steps,
                "mixing_scenes": opts.mixing_scenes, "text_variant": text_variant,
                "precision": first.precision,
                "variants": {v: {"file": str(m.net.checkpoint_path), "sha256": _sha256(str(m.net.checkpoint_path)),
                                 "steps_trained": m.net.provenance.get("steps"),
                                 "seg": "ground-truth annotations" if m.net.uses_seg else "none (baseline)"}
                             for v, m in models.items()},
                **_common_settings(opts, device, r, num, nets)}
    if text["editor"] is not None:
        settings["weights"]["text"] = _weight_info(text["path"])
        settings["weights"]["text_clip"] = {"file": text["clip"].name, "sha256": text["clip"].sha256}
    result = {"settings": settings, "notes": notes, "rows": list(rows),
              "metrics": {v: {k: res.to_dict() for k, res in row.items()} for v, row in rows.items()},
              "reconstruction": recon, "mixing": mixing, "layout": layout, "text": text_scores, "seconds": seconds}
    ev = Evaluation(result=result, images=images)
    if opts.figures:
        t = time.perf_counter()
        ev.figures = _bundle_figures(models, shown, dataset, num, text, text_variant, opts)
        seconds["figures"] = time.perf_counter() - t
    result["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    return ev


# ----------------------------------------------------------------------------------------------------------
# Figures (bundle mode).


def _blank(like: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(like[:1])  # white


def _pair_grid(row_heads: torch.Tensor, col_heads: torch.Tensor, cells: torch.Tensor) -> list[torch.Tensor]:
    """Columns of a grid with a header row and column: corner blank, `col_heads` [K] along the top, `row_heads`
    [K] down the left, `cells` [K*K] (row-major) inside."""
    k = row_heads.shape[0]
    cells = cells.reshape(k, k, *cells.shape[1:])
    return [torch.cat([_blank(row_heads), row_heads])] + \
           [torch.cat([col_heads[j:j + 1], cells[:, j]]) for j in range(col_heads.shape[0])]


def _render_pairs(fn: Callable[[Inversion, Inversion, list[int]], torch.Tensor], inv: Inversion, k: int,
                  batch_size: int, device: torch.device) -> torch.Tensor:
    """fn(A, B, B's indices) for every (A, B) of the first k items, row-major (A = row), on the CPU."""
    ia = [a for a in range(k) for _ in range(k)]
    ib = [b for _ in range(k) for b in range(k)]
    out = []
    for s in range(0, k * k, batch_size):
        a, b = ia[s:s + batch_size], ib[s:s + batch_size]
        out.append(fn(_take(inv, a, device), _take(inv, b, device), b).float().cpu())
    return torch.cat(out)


def _gt_grid(root: Path, folder: str, names: Sequence[str], name_of: Callable[[str, str], str], r: int
             ) -> torch.Tensor | None:
    """Ground-truth images ROOT/folder/name_of(row, column) for every pair of `names`, row-major; None if any
    is missing."""
    paths = [root / folder / name_of(a, b) for a in names for b in names]
    if not all(p.is_file() for p in paths):
        return None
    return torch.stack([load_image(p, r) for p in paths])


@torch.no_grad()
def _bundle_figures(models: dict[str, Models], shown: dict[str, list[torch.Tensor]], dataset: ADE20KDataset,
                    num: int, text: dict[str, Any], text_variant: str, opts: EvalOptions) -> dict[str, Figure]:
    figures: dict[str, Figure] = {}
    names = dataset.names[:min(FIGURE_ROWS, num)]
    first = next(iter(shown.values()))
    r = first[0].shape[-1]

    # Reconstructions: input | every other variant's final | the proposed (else the only) variant's y_0..y_T.
    steps_variant = "proposed" if "proposed" in shown else next(iter(shown))
    columns, labels = [first[0]], ["input"]
    for v, cols in shown.items():
        if v != steps_variant:
            columns.append(cols[-1])
            labels.append(f"{v} y_{opts.steps}")
    columns += shown[steps_variant][1:]
    labels += [f"{steps_variant} y_{t}" for t in range(opts.steps + 1)]
    figures["reconstruction"] = Figure("Reconstruction", columns, labels, list(names),
                                       "y_0: encoders only; y_t: after t HyperStyle refinement steps.")

    # The first images inverted once more, as Inversions, for mixing, layout and text figures.
    k_all = len(names)
    invs = {v: _invert_files(models[v], dataset.image_paths[:k_all], dataset.seg_paths[:k_all], opts.steps,
                             opts.batch_size) for v in {"proposed", text_variant} & set(models)}
    k = min(FIGURE_SCENES, k_all)
    scenes = list(names[:k])
    root = dataset.root
    if "proposed" in models and k >= 2:
        m = models["proposed"]
        inv, ids = invs["proposed"]
        inputs = first[0][:k]
        G, dev, bs = m.generator, m.device, opts.batch_size
        mixes = (("style", "content \\ style", lambda a, b, _: mix_style(G, a, b), lambda a, b: f"{a}__{b}.png",
                  "content images (A); columns: style images (B); cell: mix_style(A, B)", "content A, style B"),
                 ("content", "style \\ content", lambda a, b, _: mix_content(G, a, b), lambda a, b: f"{b}__{a}.png",
                  "style images (A); columns: content images (B); cell: mix_content(A, B)", "content B, style A"))
        for task, corner, mix, gt_name, rows, gt_what in mixes:
            cells = _render_pairs(mix, inv, k, bs, dev)
            figures[f"{task}_mixing"] = Figure(f"{task.capitalize()} mixing (proposed)",
                                               _pair_grid(inputs, inputs, cells), [corner] + scenes, [""] + scenes,
                                               f"Rows: {rows}.")
            gt = _gt_grid(root, "mixing/validation", scenes, gt_name, r)
            if gt is not None:
                figures[f"{task}_mixing_gt"] = Figure(f"{task.capitalize()} mixing ground truth",
                                                      _pair_grid(inputs, inputs, gt), [corner] + scenes,
                                                      [""] + scenes, f"render({gt_what}) from the synthetic renderer.")
        maps = _unit(torch.from_numpy(colorize_seg(ids[:k])).permute(0, 3, 1, 2))
        layout = _render_pairs(lambda a, _, b: edit_layout(G, m.net, a, one_hot_seg(ids[b]).to(dev),
                                                           steps=opts.steps).images, inv, k, bs, dev)
        figures["layout_edit"] = Figure("Layout edits (proposed)", _pair_grid(inputs, maps, layout),
                                        ["image \\ map"] + scenes, [""] + scenes,
                                        "Rows: images (A); columns: seg maps (B's ground truth); cell: A's style "
                                        "with B's map (edit_layout).")
    elif "proposed" not in models:
        figures["reconstruction"].caption += " (Mixing and layout figures need the proposed variant.)"

    # Text edits: input | reconstruction | one column per trained prompt, per edit setting.
    editor = text["editor"]
    if editor is not None:
        m = models[text_variant]
        inv = invs[text_variant][0].to(m.device)
        prompts = list(editor.cfg.prompts[:FIGURE_PROMPTS])
        embs = text["clip"].encode_text(prompts)
        for mode, alpha in text_alphas(editor).items():
            edits = [text_edit(m.generator, inv, editor, embs[p:p + 1], alpha=alpha, seed=opts.seed).float().cpu()
                     for p in range(len(prompts))]
            key = "text_edit" if alpha is None else "text_edit_mapper_only"
            figures[key] = Figure(f"Text edits, {mode}", [first[0], inv.images.float().cpu()] + edits,
                                  ["input", f"{text_variant} y_{opts.steps}"] + [f'"{p}"' for p in prompts],
                                  list(names), f"eps seed {opts.seed}; strength {editor.cfg.strength:g}.")
        styles = [p for p in prompts if p in STYLE_NAMES]
        gts = [[root / "textedit" / "validation" / f"{n}__{s}.png" for n in names] for s in styles]
        if styles and all(p.is_file() for col in gts for p in col):
            figures["text_edit_gt"] = Figure("Text edit ground truth", [first[0]] + [
                torch.stack([load_image(p, r) for p in col]) for col in gts], ["input"] + styles, list(names),
                "Each scene rendered in the canonical look of each style.")
    return figures


# ----------------------------------------------------------------------------------------------------------
# Folder mode.


def list_images(folder: Path | None, option: str) -> list[Path]:
    if folder is None or not Path(folder).is_dir():
        raise InputError(f"{option} {folder}: no such folder.")
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{option} {folder}: no images ({', '.join(IMAGE_SUFFIXES)}).")
    return files


def _load_all(paths: Sequence[Path], resolution: int, stage: str, progress: Progress | None) -> torch.Tensor:
    out = torch.empty(len(paths), 3, resolution, resolution, dtype=torch.uint8)
    for i, p in enumerate(paths):
        out[i] = _u8(load_image(p, resolution)[None])[0]
        if progress is not None:
            progress(stage, i + 1, len(paths))
    return out


def evaluate_folders(opts: EvalOptions, progress: Progress | None = None) -> Evaluation:
    """Folder mode (module doc)."""
    seconds: dict[str, float] = {}
    notes: list[str] = []
    real_files, fake_files = list_images(opts.real, "--real"), list_images(opts.fake, "--fake")
    asked_pairwise = [m for m in opts.metrics if m in PAIRWISE]
    if asked_pairwise and not opts.paired:
        raise InputError(f"{', '.join(asked_pairwise)} compare images pair by pair: add --paired (files matched "
                         "by name) or leave them out of --metrics.")
    r = opts.resolution or min(open_image(fake_files[0]).size)
    device = resolve_device(opts.device)
    pairs: list[tuple[Path, Path]] = []
    if opts.paired:
        real_by, fake_by = _by_stem(real_files, "--real"), _by_stem(fake_files, "--fake")
        pairs = [(real_by[s], fake_by[s]) for s in sorted(set(real_by) & set(fake_by))]
        unmatched = {"real": sorted(set(real_by) - set(fake_by)), "fake": sorted(set(fake_by) - set(real_by))}
        if not pairs:
            raise InputError(f"--paired: no file names match between --real {opts.real} and --fake {opts.fake} "
                             "(names are compared without their suffix).")
        for side, names in unmatched.items():
            if names:
                listed = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
                notes.append(f"{len(names)} {side} image(s) without a match, left out of the pairwise metrics: "
                             f"{listed}")
    nets = metric_networks(opts, resolve_bundle(opts.model), device, r)

    t = time.perf_counter()
    real = _load_all(real_files, r, "reading --real", progress)
    fake = _load_all(fake_files, r, "reading --fake", progress)
    seconds["read"] = time.perf_counter() - t

    row: dict[str, MetricResult] = {}
    if pairs:
        t = time.perf_counter()
        index_r = {p: i for i, p in enumerate(real_files)}
        index_f = {p: i for i, p in enumerate(fake_files)}
        sums: dict[str, float] = {}
        for s in range(0, len(pairs), opts.batch_size):
            chunk = pairs[s:s + opts.batch_size]
            x = _unit(fake[[index_f[f] for _, f in chunk]])
            y = _unit(real[[index_r[a] for a, _ in chunk]])
            values = pairwise_metrics(x, y)
            if nets["lpips"] is not None:
                values["lpips"] = nets["lpips"](x.to(device), y.to(device)).cpu()
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + float(v.double().sum())
            if progress is not None:
                progress("pairwise metrics", s + len(chunk), len(pairs))
        row.update(pairwise_results({k: v / len(pairs) for k, v in sums.items()}, opts.metrics, r, len(pairs),
                                    nets["lpips_reason"]))
        seconds["pairwise"] = time.perf_counter() - t
    dist, secs = DistributionScorer(real, opts, nets, device)(fake, progress)
    row.update(dist)
    seconds.update(secs)

    settings = {"mode": "folders", "real": str(Path(opts.real).resolve()), "fake": str(Path(opts.fake).resolve()),
                "num_real": len(real_files), "num_fake": len(fake_files), "paired": opts.paired,
                "num_pairs": len(pairs), "resolution_source": "--resolution" if opts.resolution else
                f"shorter side of {fake_files[0].name}", **_common_settings(opts, device, r, min(len(real), len(fake)),
                                                                            nets)}
    settings["num_images"] = {"real": len(real), "fake": len(fake)}
    result = {"settings": settings, "notes": notes, "rows": ["fake vs real"],
              "metrics": {"fake vs real": {k: res.to_dict() for k, res in row.items()}},
              "seconds": {k: round(v, 3) for k, v in seconds.items()}}
    ev = Evaluation(result=result)
    if opts.figures:
        shown = pairs[:FIGURE_ROWS] if pairs else list(zip(real_files, fake_files))[:FIGURE_ROWS]
        ir = {p: i for i, p in enumerate(real_files)}
        jf = {p: i for i, p in enumerate(fake_files)}
        ev.figures["pairs" if pairs else "samples"] = Figure(
            "Real | fake" + (" pairs (matched by name)" if pairs else " (first images of each, by name)"),
            [_unit(real[[ir[a] for a, _ in shown]]), _unit(fake[[jf[b] for _, b in shown]])], ["real", "fake"],
            [f"{a.name} | {b.name}" for a, b in shown])
    return ev


def _by_stem(files: Sequence[Path], option: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in files:
        if p.stem in out:
            raise InputError(f"{option}: {out[p.stem].name} and {p.name} have the same name stem; --paired matches "
                             "files by stem, so rename one of them.")
        out[p.stem] = p
    return out
