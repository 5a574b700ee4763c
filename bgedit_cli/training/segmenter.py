"""Stage 1: train the segmenter (image -> 151-class ADE20K map) on an ADE20K-layout folder.

Cross-entropy (label 255 ignored), optionally class-balanced (`class_balance` P: class c weighs f_c^-P, f_c its
pixel frequency), with AdamW, a linear warm-up then cosine decay to zero over `steps`, horizontal flips. With
`progressive` F, the first F/2 of the steps run at 1/4 resolution on 16 batches at once, the next F/2 at 1/2 on
4 batches (the compute of one full-resolution step for 16x or 4x the images: on CPU this is what makes the demo
preset reach its accuracy in minutes). Every `eval_every` steps and at the end: pixel accuracy and mIoU on the `validation` split. Writes, under
the bundle:
- `segmenter.safetensors` (kind `segmenter`) at every snapshot and at the end;
- `runs/segmenter-<time>/log.jsonl`: a `start` record, then one record per step (`train/loss`, `lr`, `epoch`)
  and one per evaluation (`val/pixel_acc`, `val/miou`, `val/mean_acc`), each with `step` and wall `time`;
- `runs/segmenter-<time>/state.safetensors`: everything `--resume` needs (network, optimizer, schedule, RNG,
  step, data epoch/position); `snapshots/segmenter-<step>.safetensors` beside it.
`steps` is the total: resuming a run interrupted at step k continues to `steps` with the same data order and
learning rates, so the weights equal those of an uninterrupted run (CPU, bit for bit). Raising `--steps` on
resume stretches the cosine over the new total from that point on.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bgedit_cli.errors import InputError, OutputExistsError

STAGE = "segmenter"

# Training defaults per preset (each overridable on the command line). The demo values are the measured ones
# of docs/segmenter.md.
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "tiny": {"steps": 40, "batch_size": 8, "lr": 3e-3, "class_balance": 0.5, "progressive": 0.0},
    "demo": {"steps": 4600, "batch_size": 8, "lr": 1e-2, "class_balance": 0.5, "progressive": 0.5},
    "paper-256": {"steps": 80000, "batch_size": 16, "lr": 1e-3, "class_balance": 0.5, "progressive": 0.5},
}
WEIGHT_IMAGES, MIN_FREQUENCY = 1000, 1e-3
CACHE_BYTES = 1 << 30  # training sets up to this size (as uint8) are kept decoded in memory (with --workers 0)
WEIGHT_DECAY = 1e-4
WARMUP_FRACTION, MAX_WARMUP = 0.05, 500


@dataclasses.dataclass
class SegmenterTrainOptions:
    """What the command line gives; None means the preset's default (or, with `resume`, the run's own)."""

    data: Path
    bundle: Path
    preset: str | None = None
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    class_balance: float | None = None
    progressive: float | None = None
    seed: int | None = None
    resume: bool = False
    device: str = "auto"
    workers: int = 0
    eval_every: int | None = None
    snapshot_every: int | None = None
    eval_batch_size: int = 64
    force: bool = False
    progress: bool = True


@dataclasses.dataclass
class Settings:
    """The settings a run is made of; stored in its state so that `--resume` keeps them."""

    preset: str
    steps: int
    batch_size: int
    lr: float
    class_balance: float
    progressive: float
    seed: int

    def command(self, data: Path, bundle: Path) -> str:
        return (f"bgedit train segmenter --data {data} --model {bundle} --preset {self.preset} --steps {self.steps} "
                f"--batch-size {self.batch_size} --lr {self.lr:g} --class-balance {self.class_balance:g} "
                f"--progressive {self.progressive:g} --seed {self.seed}")


def lr_at(step: int, total: int, base_lr: float) -> float:
    """Learning rate of step `step` (0-based): linear warm-up over 5% of the steps (<= 500), cosine to 0."""
    warmup = min(MAX_WARMUP, max(1, int(WARMUP_FRACTION * total)))
    if step < warmup:
        return base_lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def resolve_settings(opts: SegmenterTrainOptions, saved: dict[str, Any] | None) -> Settings:
    """Command line > resumed run > preset defaults. Changing what a run is made of on resume is refused."""
    from bgedit_cli.nn.segmenter import segmenter_preset

    if saved is not None:
        for name in ("preset", "batch_size", "lr", "class_balance", "progressive", "seed"):
            given = getattr(opts, name)
            if given is not None and given != saved[name]:
                flag = "--" + name.replace("_", "-")
                raise InputError(f"{flag} {given} differs from the resumed run's {saved[name]}; leave {flag} out "
                                 "to resume, or start a new run without --resume.")
        return Settings(**{**saved, "steps": opts.steps if opts.steps is not None else saved["steps"]})
    preset = opts.preset or "demo"
    cfg = segmenter_preset(preset)  # unknown name -> ConfigError
    defaults = TRAIN_DEFAULTS[preset]
    pick = lambda name: getattr(opts, name) if getattr(opts, name) is not None else defaults[name]  # noqa: E731
    settings = Settings(preset=preset, steps=pick("steps"), batch_size=pick("batch_size"), lr=pick("lr"),
                        class_balance=pick("class_balance"), progressive=pick("progressive"),
                        seed=opts.seed if opts.seed is not None else 0)
    if settings.steps < 1 or settings.batch_size < 1 or not settings.lr > 0:
        raise InputError("--steps, --batch-size and --lr must be positive.")
    if not 0 <= settings.class_balance <= 1:
        raise InputError(f"--class-balance {settings.class_balance}: expected a power between 0 and 1.")
    if not 0 <= settings.progressive <= 1:
        raise InputError(f"--progressive {settings.progressive}: expected a fraction of the steps, 0..1.")
    if settings.progressive > 0 and (cfg.resolution // 4) % cfg.downsampling:
        raise InputError(f"--progressive: preset {preset} cannot run at a quarter of its resolution "
                         f"({cfg.resolution // 4} px is not a multiple of {cfg.downsampling}); use --progressive 0.")
    return settings


def resolution_divisor(step: int, total: int, progressive: float) -> int:
    """Progressive resizing: the first `progressive / 2` of the steps at 1/4 resolution, the next at 1/2, then full."""
    t = step / total
    return 4 if t < progressive / 2 else 2 if t < progressive else 1


class DecodedCache(torch.utils.data.Dataset):
    """A small ADE20K-layout training set kept decoded in memory (uint8), so that later epochs skip the file
    decoding. Items equal the wrapped dataset's bit for bit, flips included (same `flip_for(seed, epoch, index)`)."""

    def __init__(self, dataset) -> None:
        from bgedit_cli.data.ade20k import ADE20KDataset

        self.flip, self.seed, self.epoch = dataset.flip, dataset.seed, 0
        self.dataset = ADE20KDataset(dataset.root, dataset.split, resolution=dataset.resolution, flip=False)
        self.items: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from bgedit_cli.data.ade20k import flip_for

        if index not in self.items:
            item = self.dataset[index]
            pixels = ((item["img"] + 1) * 127.5).round_().to(torch.uint8)
            self.items[index] = (pixels, item["seg"].to(torch.uint8))
        pixels, seg = self.items[index]
        img, seg = pixels.float().div_(127.5).sub_(1.0), seg.long()  # as bgedit_cli.io.image_to_tensor
        if self.flip and flip_for(self.seed, self.epoch, index):
            img, seg = img.flip(-1), seg.flip(-1)
        return {"img": img, "seg": seg, "name": self.dataset.names[index], "index": index}


def class_weights(dataset: torch.utils.data.Dataset, num_classes: int, power: float) -> torch.Tensor:
    """Cross-entropy weights w_c proportional to max(f_c, 1e-3) ** -power, where f_c is the pixel frequency of class c
    in (up to) 1000 evenly spaced training maps; scaled so that the average labelled pixel weighs 1."""
    n = len(dataset)
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for i in sorted({round(k * (n - 1) / max(1, min(n, WEIGHT_IMAGES) - 1)) for k in range(min(n, WEIGHT_IMAGES))}):
        seg = dataset[i]["seg"]
        counts += torch.bincount(seg[seg != 255].flatten(), minlength=num_classes)[:num_classes].double()
    freq = counts / counts.sum().clamp(min=1)
    weights = freq.clamp(min=MIN_FREQUENCY) ** -power
    return (weights / (weights * freq).sum().clamp(min=1e-12)).float()


@torch.no_grad()
def evaluate(net: torch.nn.Module, dataset: torch.utils.data.Dataset, *, batch_size: int, device: torch.device,
             workers: int = 0, d=None) -> dict[str, float | int]:
    """Pixel accuracy / mIoU of `net` on `dataset` (each rank a shard; confusion matrices summed)."""
    import torch.distributed as dist
    from torch.utils.data import DataLoader, Subset

    from bgedit_cli.metrics.segmentation import confusion_matrix, segmentation_scores

    num_classes = net.cfg.num_classes
    if d is not None and d.enabled:
        dataset = Subset(dataset, range(d.rank, len(dataset), d.world_size))
    was_training = net.training
    net.eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    for batch in DataLoader(dataset, batch_size=batch_size, num_workers=workers):
        pred = net(batch["img"].to(device)).argmax(dim=1)
        cm += confusion_matrix(pred, batch["seg"].to(device), num_classes)
    if d is not None and d.enabled:
        dist.all_reduce(cm)
    net.train(was_training)
    return segmentation_scores(cm.cpu())


def train_segmenter(opts: SegmenterTrainOptions) -> dict[str, Any]:
    """Run (or resume) a segmenter training; returns a summary (paths, settings, final validation scores)."""
    from bgedit_cli.bundle import BUNDLE_FILES, bundle_file
    from bgedit_cli.checkpoint import check_writable
    from bgedit_cli.data.ade20k import ADE20KDataset
    from bgedit_cli.nn.segmenter import Segmenter, segmenter_preset
    from bgedit_cli.training.common import (RunLog, StopRequest, TrainProgress, TrainingInterrupted, all_reduce_mean,
                                            init_distributed, resumable_batches, run_dir_for, save_snapshot,
                                            split_batch, train_device)
    from bgedit_cli.training.state import gather_rng_states, load_state, restore_rng_states, save_state, seed_everything

    # Devices and processes (torchrun sets WORLD_SIZE > 1 for DDP).
    bundle = Path(opts.bundle).expanduser()
    d = init_distributed(train_device(opts.device))
    device = train_device(opts.device, d)

    # Settings, and the state of the run to resume.
    state = None
    run_dir = None
    if opts.resume:
        run_dir, _ = run_dir_for(bundle, STAGE, True, d)
        state = load_state(run_dir / "state.safetensors")
    settings = resolve_settings(opts, state["settings"] if state else None)
    cfg = segmenter_preset(settings.preset)
    split_batch(settings.batch_size, d)  # the global batch must split evenly over the processes
    eval_every = opts.eval_every if opts.eval_every is not None else max(1, settings.steps // 10)
    snapshot_every = opts.snapshot_every if opts.snapshot_every is not None else max(1, settings.steps // 10)

    # Load data (both splits checked before anything is written).
    train_set = ADE20KDataset(opts.data, "training", resolution=cfg.resolution, flip=True, seed=settings.seed)
    val_set = ADE20KDataset(opts.data, "validation", resolution=cfg.resolution, flip=False)
    if opts.workers == 0 and (len(train_set) + len(val_set)) * 4 * cfg.resolution**2 <= CACHE_BYTES:
        train_set, val_set = DecodedCache(train_set), DecodedCache(val_set)
    if len(train_set) < settings.batch_size:
        raise InputError(f"{opts.data}: {len(train_set)} training image(s), fewer than one batch of "
                         f"{settings.batch_size}; lower --batch-size or add data.")

    # Output paths.
    out_path = bundle_file(bundle, STAGE, must_exist=False)
    if not opts.resume:
        if d.is_main and not opts.force:
            check_writable(out_path, False)  # refuse before training, not after
        run_dir, _ = run_dir_for(bundle, STAGE, False, d)
    log = RunLog(run_dir / "log.jsonl" if d.is_main else None,
                 start_time=time.time() - (state["wall_seconds"] if state else 0.0))

    # Build networks.
    seed_everything(settings.seed)
    net = Segmenter(cfg).to(device).train()
    if d.enabled and cfg.norm == "batch":
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=WEIGHT_DECAY)

    # Loss weights: rarer classes weigh more (--class-balance), fixed for the whole run.
    if state is not None:
        weights = state["class_weights"]
    elif settings.class_balance > 0:
        weights = class_weights(train_set, cfg.num_classes, settings.class_balance)
    else:
        weights = torch.ones(cfg.num_classes)
    weights = weights.to(device)

    # Resume.
    step, epoch, position, metrics = 0, 0, 0, {}
    if state is not None:
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        restore_rng_states(state["rng"], d, fallback_seed=settings.seed + state["step"])
        step, epoch, position = state["step"], state["data"]["epoch"], state["data"]["position"]
        metrics = state["metrics"]
    model = net
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    log.write(event="resume" if state else "start", step=step, run=str(run_dir), **dataclasses.asdict(settings),
              command=settings.command(Path(opts.data), bundle),
              config=cfg.to_dict(), world_size=d.world_size, device=str(device), train_images=len(train_set),
              val_images=len(val_set))

    def provenance() -> dict[str, Any]:
        return {"command": settings.command(Path(opts.data).resolve(), bundle.resolve()),
                "data": str(Path(opts.data).resolve()), "steps": step, "preset": settings.preset,
                "settings": dataclasses.asdict(settings), "run": str(run_dir), "val": metrics}

    def save_resumable() -> None:
        rngs = gather_rng_states(d)
        if d.is_main:
            save_state(run_dir / "state.safetensors", {
                "net": net.state_dict(), "optimizer": optimizer.state_dict(), "rng": rngs,
                "schedule": {"name": "warmup-cosine", "base_lr": settings.lr, "total_steps": settings.steps},
                "settings": dataclasses.asdict(settings), "class_weights": weights, "step": step,
                "data": {"epoch": epoch, "position": position}, "metrics": metrics,
                "wall_seconds": time.time() - log.t0})

    def snapshot() -> None:
        if d.is_main:
            save_snapshot(net, STAGE, out_path, run_dir, STAGE, step, provenance())
        save_resumable()

    def run_eval() -> None:
        nonlocal metrics
        scores = evaluate(net, val_set, batch_size=opts.eval_batch_size, device=device, workers=opts.workers, d=d)
        metrics = {k: scores[k] for k in ("pixel_acc", "miou", "mean_acc")}
        log.write(step=step, **{f"val/{k}": v for k, v in scores.items()})

    # Train.
    batches = resumable_batches(train_set, settings.batch_size, seed=settings.seed, epoch=epoch, position=position,
                                workers=opts.workers, d=d, pin_memory=device.type == "cuda")
    use_amp = device.type == "cuda"
    with StopRequest() as stop, TrainProgress(settings.steps, step, description="segmenter",
                                              enabled=opts.progress and d.is_main) as bar:
        while step < settings.steps:
            if stop.check(d):
                save_resumable()
                raise TrainingInterrupted(
                    f"interrupted at step {step}/{settings.steps}; the state is saved in {run_dir}. Continue with "
                    f"`bgedit train segmenter --data {opts.data} --model {bundle} --resume`.")
            # Low resolution first (--progressive): at 1/k resolution, k*k batches for the compute of one.
            k = resolution_divisor(step, settings.steps, settings.progressive)
            parts = [next(batches) for _ in range(k * k)]
            epoch, position = parts[-1][0], parts[-1][1]
            img = torch.cat([b["img"] for _, _, b in parts]).to(device, non_blocking=True)
            seg = torch.cat([b["seg"] for _, _, b in parts]).to(device, non_blocking=True)
            if k > 1:
                img, seg = F.avg_pool2d(img, k), seg[:, k // 2::k, k // 2::k]
            lr = lr_at(step, settings.steps, settings.lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(img)
            loss = F.cross_entropy(logits.float(), seg, weight=weights, ignore_index=255)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1

            loss_value = all_reduce_mean(loss.detach(), d).item()
            log.write(step=step, epoch=epoch, lr=lr, resolution=img.shape[-1], **{"train/loss": loss_value})
            bar.update(1, len(img) * d.world_size, loss=loss_value)
            last = step == settings.steps
            if last or (eval_every > 0 and step % eval_every == 0):
                run_eval()
            if last or (snapshot_every > 0 and step % snapshot_every == 0):
                snapshot()

    if state is not None and step == state["step"] and step >= settings.steps:  # resumed a finished run
        run_eval()
        snapshot()
    return {"is_main": d.is_main, "model": str(out_path), "run": str(run_dir), "steps": step, **dataclasses.asdict(settings),
            "val": metrics, "wall_seconds": round(time.time() - log.t0, 1),
            "bundle_files": sorted(p for p in BUNDLE_FILES.values() if (bundle / p).is_file())}
