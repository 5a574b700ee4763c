"""What every section reads and writes: the options, the images to score, the networks, the data's vocabulary,
and the one place where per-image values are gathered before statistics are taken.

    ctx = open_bundle(EvalOptions(data=DATA, model=BUNDLE))       # checks and loads everything, before any work
    ctx = open_folders(EvalOptions(real=A, fake=B, paired=True), progress)

Bundle mode scores the first `limit` images of the split (`ctx.indices`, sorted by name); folder mode every image
of both folders (`ctx.real_files`, `ctx.fake_files`, matched `ctx.pairs`). The image sets the distribution
metrics compare are `ctx.real` and `ctx.fake[row]` (uint8 [N, 3, R, R]); in bundle mode the reconstruction
section fills them. A section computes its per-image values (scores, features, segmenter maps), passes them
through `ctx.gather` once, and only then takes means, Fréchet distances or confusion matrices.

Under torchrun (`shard`), a section that shards (`Section.shards`: reconstruction, pairwise, the distribution
features) does the items of `ctx.share(n)` only, a contiguous run of whole batches, and `ctx.gather` concatenates
every rank's values in rank order: the batches, the values and their order are those of one process, so are the
numbers. `ctx.real` and `ctx.fake` hold every image on every rank (as one process holds them); the sections that
do not shard (the scene benchmarks: mixing, layout, text; figures) run whole on every rank.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import platform
import time
from pathlib import Path
from typing import Any, Iterator, Sequence, TypeVar

import torch

from bgedit_cli.bundle import BUNDLE_FILES, resolve_bundle
from bgedit_cli.checkpoint import read_header
from bgedit_cli.data.ade20k import ADE20KDataset
from bgedit_cli.data.synth import Vocabulary, read_vocabulary
from bgedit_cli.distributed import Dist, contiguous_share, gather_items
from bgedit_cli.errors import CheckpointError, InputError
from bgedit_cli.io import IMAGE_SUFFIXES, load_image, open_image
from bgedit_cli.metrics.distribution import KID_SCALE
from bgedit_cli.metrics.swd import SWD_SCALE, SWDSettings
from bgedit_cli.nn.inversion import VARIANTS
from bgedit_cli.pipelines.evaluation.scoring import (MetricNets, Progress, library_versions, metric_networks,
                                                     sha256, to_u8, weight_info)
from bgedit_cli.pipelines.evaluation.section import METRICS, PAIRWISE, Figure, SectionResult
from bgedit_cli.pipelines.evaluation.text_model import OCEAN_SCENES, TextModel, open_text_model
from bgedit_cli.pipelines.models import Models, load_models
from bgedit_cli.runtime import resolve_device

RESIZE = "largest centred square, PIL bicubic (antialiased) to R x R; seg maps nearest (bgedit_cli.io)"
T = TypeVar("T")


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
class Context:
    """Shared by both modes (module doc). `results` fills in section order; `seconds` holds wall time per stage."""

    opts: EvalOptions
    device: torch.device
    resolution: int
    rows: list[str]  # Table 1's rows: the variants, or "fake vs real"
    nets: MetricNets
    settings: dict[str, Any]
    notes: list[str]
    progress: Progress | None = None  # (stage, done, total)
    real: torch.Tensor | None = None  # uint8 [N, 3, R, R]: the reference set of the distribution metrics
    fake: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)  # row -> uint8 [N, 3, R, R]
    results: dict[str, SectionResult] = dataclasses.field(default_factory=dict)
    figures: dict[str, Figure] = dataclasses.field(default_factory=dict)
    images: dict[str, tuple[list[str], torch.Tensor]] = dataclasses.field(default_factory=dict)  # PNGs to write
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    shard: Dist = Dist()  # this process under torchrun
    sharded: bool = False  # the running section shards its items (set by the registry from `Section.shards`)

    mode = ""

    def share(self, num: int) -> slice:
        """The items of `num` this process does (a slice of them): all, or under torchrun in a section that
        shards, this rank's contiguous run of whole batches (`distributed.contiguous_share`)."""
        mine = contiguous_share(num, self.opts.batch_size, self.shard) if self.sharded else range(num)
        return slice(mine.start, mine.stop)

    def gather(self, values: T) -> T:
        """Per-image values of this process (tensors whose first axis is the image or pair, in dicts/lists) ->
        those of every image. One process holds them all, so they come back as they are; in a section that shards
        under torchrun, every rank's share is all-gathered here, between the per-image work and the statistics."""
        return gather_items(values, self.shard) if self.sharded else values

    def report(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)

    @contextlib.contextmanager
    def timer(self, key: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t

    @property
    def title(self) -> str:
        """Table 1's caption."""
        raise NotImplementedError

    @property
    def source(self) -> str:
        """What was evaluated, in a few words (the report's first line)."""
        raise NotImplementedError


@dataclasses.dataclass
class BundleContext(Context):
    bundle: Path = Path()
    models: dict[str, Models] = dataclasses.field(default_factory=dict)  # variant -> networks, in VARIANTS order
    dataset: ADE20KDataset | None = None
    indices: list[int] = dataclasses.field(default_factory=list)  # the dataset items scored
    text: TextModel | None = None
    text_reason: str | None = None  # why there is no text model
    text_variant: str = "proposed"
    vocabulary: Vocabulary | None = None  # the data's own words (DATA/vocabulary.json, `read_vocabulary`)
    shown: dict[str, list[torch.Tensor]] = dataclasses.field(default_factory=dict)  # figure rows per variant

    mode = "bundle"

    @property
    def names(self) -> list[str]:
        return [self.dataset.names[i] for i in self.indices]

    @property
    def root(self) -> Path:
        return self.dataset.root

    @property
    def title(self) -> str:
        s = self.settings
        return (f"Reconstruction of {s['num_images']} {s['split']} images of {s['data']} at {self.resolution} px, "
                f"{s['steps']} refinement step{'' if s['steps'] == 1 else 's'}")

    @property
    def source(self) -> str:
        return f"model {self.settings['model']} on {self.settings['data']} ({self.settings['split']})"


@dataclasses.dataclass
class FolderContext(Context):
    real_files: list[Path] = dataclasses.field(default_factory=list)
    fake_files: list[Path] = dataclasses.field(default_factory=list)
    pairs: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # (real index, fake index), by name

    mode = "folders"

    @property
    def title(self) -> str:
        s = self.settings
        pairs = f", {s['num_pairs']} pairs" if s["paired"] else ""
        return (f"{s['fake']} vs {s['real']} at {self.resolution} px ({s['num_real']} real, {s['num_fake']} fake"
                f"{pairs})")

    @property
    def source(self) -> str:
        return f"{self.settings['fake']} against {self.settings['real']}"


def common_settings(opts: EvalOptions, device: torch.device, resolution: int, num: int,
                    nets: MetricNets, shard: Dist | None = None) -> dict[str, Any]:
    return {"metrics": list(opts.metrics), "num_images": num, "resolution": resolution, "resize": RESIZE,
            "seed": opts.seed, "kid_subset_size": min(1000, num), "kid_subsets": 100, "kid_scale": KID_SCALE,
            "swd": {**SWDSettings(seed=opts.seed).to_dict(), "scale": SWD_SCALE}, "batch_size": opts.batch_size,
            "device": str(device), "threads": torch.get_num_threads(), "machine": platform.machine(),
            "processes": (shard or Dist()).world_size,
            "weights": nets.weights, "versions": library_versions()}


# ----------------------------------------------------------------------------------------------------------
# Bundle mode.


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


def open_bundle(opts: EvalOptions, progress: Progress | None = None, shard: Dist | None = None) -> BundleContext:
    """Bundle mode: data, models, text model and metric networks, all checked before any work. `shard`: this
    process under torchrun (module doc)."""
    if opts.data is None or not Path(opts.data).is_dir():
        raise InputError(f"--data {opts.data}: no such folder; give a dataset in the ADE20K layout (e.g. from "
                         "`bgedit data synth --out DIR`).")
    vocabulary = read_vocabulary(opts.data)  # the data's own words; a broken vocabulary.json stops here
    bundle = resolve_bundle(opts.model)
    if not bundle.is_dir():
        raise InputError(f"{bundle}: no such model bundle folder; pass --model DIR (a folder holding "
                         "generator.safetensors, inversion.safetensors, ...) or install the demo bundle with "
                         "`make demo`.")
    files, notes = variant_files(bundle, opts.variants, opts.inversion)
    models = {v: load_models(bundle, v, opts.device, inversion=path, precision=opts.precision)
              for v, path in files.items()}
    first = next(iter(models.values()))
    device, r = first.device, first.resolution
    dataset = ADE20KDataset(opts.data, opts.split, resolution=r, flip=False,
                            require_seg=any(m.net.uses_seg for m in models.values()))
    num = len(dataset) if opts.limit is None else min(opts.limit, len(dataset))
    text_variant = "proposed" if "proposed" in models else next(iter(models))
    text, text_reason = open_text_model(bundle, models[text_variant], opts.clip, opts.text)
    nets = metric_networks(opts.metrics, alexnet=opts.alexnet, clip=opts.clip, inception=opts.inception,
                           bundle=bundle, device=device, resolution=r)

    settings = {"mode": "bundle", "data": str(Path(opts.data).resolve()), "split": opts.split,
                "first_image": dataset.names[0], "last_image": dataset.names[num - 1],
                "model": str(bundle.resolve()), "generator_sha256": first.generator_sha256, "steps": opts.steps,
                "mixing_scenes": opts.mixing_scenes, "text_variant": text_variant, "precision": first.precision,
                "variants": {v: {"file": str(m.net.checkpoint_path), "sha256": sha256(str(m.net.checkpoint_path)),
                                 "steps_trained": m.net.provenance.get("steps"),
                                 "seg": "ground-truth annotations" if m.net.uses_seg else "none (baseline)"}
                             for v, m in models.items()},
                **common_settings(opts, device, r, num, nets, shard)}
    if text is not None:
        settings["weights"]["text"] = weight_info(text.path)
        settings["weights"]["text_clip"] = {"file": text.clip.name, "sha256": text.clip.sha256}
    return BundleContext(opts=opts, device=device, resolution=r, rows=list(models), nets=nets, settings=settings,
                         notes=notes, progress=progress, bundle=bundle, models=models, dataset=dataset,
                         indices=list(range(num)), text=text, text_reason=text_reason, text_variant=text_variant,
                         vocabulary=vocabulary, shard=shard or Dist())


# ----------------------------------------------------------------------------------------------------------
# Folder mode.


def list_images(folder: Path | None, option: str) -> list[Path]:
    if folder is None or not Path(folder).is_dir():
        raise InputError(f"{option} {folder}: no such folder.")
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{option} {folder}: no images ({', '.join(IMAGE_SUFFIXES)}).")
    return files


def _by_stem(files: Sequence[Path], option: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, p in enumerate(files):
        if p.stem in out:
            raise InputError(f"{option}: {files[out[p.stem]].name} and {p.name} have the same name stem; --paired "
                             "matches files by stem, so rename one of them.")
        out[p.stem] = i
    return out


def _load_all(paths: Sequence[Path], resolution: int, stage: str, progress: Progress | None) -> torch.Tensor:
    out = torch.empty(len(paths), 3, resolution, resolution, dtype=torch.uint8)
    for i, p in enumerate(paths):
        out[i] = to_u8(load_image(p, resolution)[None])[0]
        if progress is not None:
            progress(stage, i + 1, len(paths))
    return out


def open_folders(opts: EvalOptions, progress: Progress | None = None, shard: Dist | None = None) -> FolderContext:
    """Folder mode: both folders listed, matched (`paired`) and read at one resolution. `shard`: this process
    under torchrun (module doc)."""
    notes: list[str] = []
    real_files, fake_files = list_images(opts.real, "--real"), list_images(opts.fake, "--fake")
    asked_pairwise = [m for m in opts.metrics if m in PAIRWISE]
    if asked_pairwise and not opts.paired:
        raise InputError(f"{', '.join(asked_pairwise)} compare images pair by pair: add --paired (files matched "
                         "by name) or leave them out of --metrics.")
    r = opts.resolution or min(open_image(fake_files[0]).size)
    device = resolve_device(opts.device)
    pairs: list[tuple[int, int]] = []
    if opts.paired:
        real_by, fake_by = _by_stem(real_files, "--real"), _by_stem(fake_files, "--fake")
        pairs = [(real_by[s], fake_by[s]) for s in sorted(set(real_by) & set(fake_by))]
        if not pairs:
            raise InputError(f"--paired: no file names match between --real {opts.real} and --fake {opts.fake} "
                             "(names are compared without their suffix).")
        unmatched = {"real": sorted(set(real_by) - set(fake_by)), "fake": sorted(set(fake_by) - set(real_by))}
        for side, names in unmatched.items():
            if names:
                listed = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
                notes.append(f"{len(names)} {side} image(s) without a match, left out of the pairwise metrics: "
                             f"{listed}")
    nets = metric_networks(opts.metrics, alexnet=opts.alexnet, clip=opts.clip, inception=opts.inception,
                           bundle=resolve_bundle(opts.model), device=device, resolution=r)
    settings = {"mode": "folders", "real": str(Path(opts.real).resolve()), "fake": str(Path(opts.fake).resolve()),
                "num_real": len(real_files), "num_fake": len(fake_files), "paired": opts.paired,
                "num_pairs": len(pairs), "resolution_source": "--resolution" if opts.resolution else
                f"shorter side of {fake_files[0].name}",
                **common_settings(opts, device, r, min(len(real_files), len(fake_files)), nets, shard)}
    settings["num_images"] = {"real": len(real_files), "fake": len(fake_files)}
    ctx = FolderContext(opts=opts, device=device, resolution=r, rows=["fake vs real"], nets=nets, settings=settings,
                        notes=notes, progress=progress, real_files=real_files, fake_files=fake_files, pairs=pairs,
                        shard=shard or Dist())
    with ctx.timer("read"):
        ctx.real = _load_all(real_files, r, "reading --real", progress)
        ctx.fake["fake vs real"] = _load_all(fake_files, r, "reading --fake", progress)
    return ctx
