"""Stage 1: train the segmenter (image -> 151-class ADE20K map) on an ADE20K-layout folder.

Cross-entropy (label 255 ignored), optionally class-balanced (`class_balance` P: class c weighs f_c^-P, f_c its
pixel frequency), with AdamW, a linear warm-up then cosine decay to zero over `steps` (the config's schedule
fields), horizontal flips and, with `degrade` D, a random degradation of a share D of the images (`degrade`:
blur, half resolution, gain/offset, noise). With `progressive` F, the first F/2 of the steps run at 1/4
resolution on 16 batches at once, the next F/2 at 1/2 on 4 batches (the compute of one full-resolution step for
16x or 4x the images: on CPU this is what makes the demo preset reach its accuracy in minutes). Every
`eval_every` steps and at the end: pixel accuracy and mIoU on the `validation` split. Writes, under
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
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset

from bgedit_cli.data.ade20k import ADE20KDataset, flip_for
from bgedit_cli.data.ade20k_classes import IGNORE_ID
from bgedit_cli.errors import InputError
from bgedit_cli.metrics.segmentation import confusion_matrix, segmentation_scores
from bgedit_cli.nn.segmenter import Segmenter, segmenter_preset
from bgedit_cli.runtime import autocast
from bgedit_cli.training.common import all_reduce_mean, warmup_cosine_lr
from bgedit_cli.training.configs import SegmenterTrainConfig
from bgedit_cli.training.runner import DataStream, StageBase, StageOptions, StageRun
from bgedit_cli.training.state import seed_everything

STAGE = "segmenter"
WEIGHT_IMAGES, MIN_FREQUENCY = 1000, 1e-3
CACHE_BYTES = 1 << 30  # training sets up to this size (as uint8) are kept decoded in memory (with --workers 0)
WEIGHT_DECAY = 1e-4


@dataclasses.dataclass
class SegmenterTrainOptions(StageOptions):
    """The command line's options (see StageOptions); `eval_batch_size`: images per validation pass."""

    eval_batch_size: int = 64


def resolution_divisor(step: int, total: int, progressive: float) -> int:
    """Progressive resizing: the first `progressive / 2` of the steps at 1/4 resolution, the next at 1/2, then full."""
    t = step / total
    return 4 if t < progressive / 2 else 2 if t < progressive else 1


class DecodedCache(torch.utils.data.Dataset):
    """A small ADE20K-layout training set kept decoded in memory (uint8), so that later epochs skip the file
    decoding. Items equal the wrapped dataset's bit for bit, flips included (same `flip_for(seed, epoch, index)`)."""

    def __init__(self, dataset) -> None:
        self.flip, self.seed, self.epoch = dataset.flip, dataset.seed, 0
        self.dataset = ADE20KDataset(dataset.root, dataset.split, resolution=dataset.resolution, flip=False)
        self.items: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index not in self.items:
            item = self.dataset[index]
            pixels = ((item["img"] + 1) * 127.5).round_().to(torch.uint8)
            self.items[index] = (pixels, item["seg"].to(torch.uint8))
        pixels, seg = self.items[index]
        img, seg = pixels.float().div_(127.5).sub_(1.0), seg.long()  # as bgedit_cli.io.image_to_tensor
        if self.flip and flip_for(self.seed, self.epoch, index):
            img, seg = img.flip(-1), seg.flip(-1)
        return {"img": img, "seg": seg, "name": self.dataset.names[index], "index": index}


def degrade(img: torch.Tensor, share: float, generator: torch.Generator) -> torch.Tensor:
    """Each image of `img` ([-1, 1], N x 3 x H x W) is degraded with probability `share`: each of four kinds
    independently with probability 1/2, in this order: Gaussian blur (sigma 0.3-1.5 px), half resolution and back
    (2x2 average, bilinear), a per-channel gain and offset (+-10%), Gaussian noise (std up to 0.08). What a
    generator's reconstruction or a photo does to a clean render; the maps stay as they are. Random numbers come
    from `generator` (CPU) only, so a run's draws do not depend on anything else."""
    n, c, h, w = img.shape
    u = torch.rand(n, 9, generator=generator).to(img.device)
    on = (u[:, 0] < share)[:, None] & (u[:, 1:5] < 0.5)  # which kinds each image gets
    out = img
    if on[:, 0].any():  # blur: one separable kernel per image (a delta for the images without blur)
        radius = 4
        x = torch.arange(-radius, radius + 1, device=img.device, dtype=img.dtype)
        sigma = (0.3 + 1.2 * u[:, 5]).to(img.dtype)
        kernel = torch.exp(-0.5 * (x[None] / sigma[:, None]) ** 2)
        kernel = torch.where(on[:, :1], kernel / kernel.sum(1, keepdim=True), (x == 0).to(img.dtype)[None])
        kernel = kernel.repeat_interleave(c, 0)
        padded = F.pad(out.reshape(1, n * c, h, w), (radius,) * 4, mode="reflect")
        out = F.conv2d(F.conv2d(padded, kernel[:, None, :, None], groups=n * c), kernel[:, None, None, :],
                       groups=n * c).reshape(n, c, h, w)
    if on[:, 1].any():
        half = F.interpolate(F.avg_pool2d(out, 2), size=(h, w), mode="bilinear", align_corners=False)
        out = torch.where(on[:, 1, None, None, None], half, out)
    if on[:, 2].any():
        gain, offset = torch.rand(2, n, c, 1, 1, generator=generator).to(img.device, img.dtype) * 0.2 - 0.1
        keep = on[:, 2, None, None, None]
        out = out * (1 + gain * keep) + offset * keep
    if on[:, 3].any():
        noise = torch.randn(n, c, h, w, generator=generator).to(img.device, img.dtype)
        out = out + noise * (0.08 * u[:, 6] * on[:, 3])[:, None, None, None]
    return out.clamp(-1, 1)


def class_weights(dataset: torch.utils.data.Dataset, num_classes: int, power: float) -> torch.Tensor:
    """Cross-entropy weights w_c proportional to max(f_c, 1e-3) ** -power, where f_c is the pixel frequency of class c
    in (up to) 1000 evenly spaced training maps; scaled so that the average labelled pixel weighs 1."""
    n = len(dataset)
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for i in sorted({round(k * (n - 1) / max(1, min(n, WEIGHT_IMAGES) - 1)) for k in range(min(n, WEIGHT_IMAGES))}):
        seg = dataset[i]["seg"]
        counts += torch.bincount(seg[seg != IGNORE_ID].flatten(), minlength=num_classes)[:num_classes].double()
    freq = counts / counts.sum().clamp(min=1)
    weights = freq.clamp(min=MIN_FREQUENCY) ** -power
    return (weights / (weights * freq).sum().clamp(min=1e-12)).float()


@torch.no_grad()
def evaluate(net: torch.nn.Module, dataset: torch.utils.data.Dataset, *, batch_size: int, device: torch.device,
             workers: int = 0, d=None) -> dict[str, float | int]:
    """Pixel accuracy / mIoU of `net` on `dataset` (each rank a shard; confusion matrices summed)."""
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




# ----------------------------------------------------------------------------------------------------------
# The stage.


class SegmenterStage(StageBase):
    """The segmenter's part of a run (training/runner.py drives it): network, optimizer, one step, evaluation."""

    name = kind = resume_args = STAGE

    def __init__(self, cfg: SegmenterTrainConfig, opts: SegmenterTrainOptions, run: StageRun) -> None:
        super().__init__(cfg, opts, run)
        net_cfg = segmenter_preset(cfg.preset)  # unknown name -> ConfigError
        if cfg.progressive > 0 and (net_cfg.resolution // 4) % net_cfg.downsampling:
            raise InputError(f"--progressive: preset {cfg.preset} cannot run at a quarter of its resolution "
                             f"({net_cfg.resolution // 4} px is not a multiple of {net_cfg.downsampling}); use "
                             "--progressive 0.")

        # Load data (both splits checked before anything is written).
        train_set = ADE20KDataset(opts.data, "training", resolution=net_cfg.resolution, flip=True, seed=cfg.seed)
        val_set = ADE20KDataset(opts.data, "validation", resolution=net_cfg.resolution, flip=False)
        if opts.workers == 0 and (len(train_set) + len(val_set)) * 4 * net_cfg.resolution**2 <= CACHE_BYTES:
            train_set, val_set = DecodedCache(train_set), DecodedCache(val_set)
        if len(train_set) < cfg.batch_size:
            raise InputError(f"{opts.data}: {len(train_set)} training image(s), fewer than one batch of "
                             f"{cfg.batch_size}; lower --batch-size or add data.")
        self.dataset, self.val_set = train_set, val_set

        # Build networks.
        seed_everything(cfg.seed)
        self.net = Segmenter(net_cfg).to(self.device).train()
        if self.d.enabled and net_cfg.norm == "batch":
            self.net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.net)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=WEIGHT_DECAY)
        self.model = self.net
        if self.d.enabled:
            self.model = DistributedDataParallel(self.net, device_ids=[self.device.index]
                                                 if self.device.type == "cuda" else None)

        # Loss weights: rarer classes weigh more (--class-balance), fixed for the whole run (kept on resume).
        if run.state is not None:
            weights = run.state["class_weights"]
        elif cfg.class_balance > 0:
            weights = class_weights(train_set, net_cfg.num_classes, cfg.class_balance)
        else:
            weights = torch.ones(net_cfg.num_classes)
        self.weights = weights.to(self.device)

    # State.

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedule": {"name": "warmup-cosine", "base_lr": self.cfg.lr, "total_steps": self.cfg.steps,
                             **self.cfg.lr_schedule()},
                "class_weights": self.weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])

    # The step: low resolution first (--progressive): at 1/k resolution, k*k batches for the compute of one.

    def train_step(self, step: int, batches: DataStream) -> tuple[dict[str, Any], dict[str, float], int]:
        cfg = self.cfg
        k = resolution_divisor(step, cfg.steps, cfg.progressive)
        parts = [batches.next() for _ in range(k * k)]
        img = torch.cat([b["img"] for b in parts]).to(self.device, non_blocking=True)
        seg = torch.cat([b["seg"] for b in parts]).to(self.device, non_blocking=True)
        if cfg.degrade > 0:  # seeded by (seed, step, rank): the same draws straight or resumed
            draws = torch.Generator().manual_seed((cfg.seed * 1_000_003 + step) * 64 + self.d.rank)
            img = degrade(img, cfg.degrade, draws)
        if k > 1:
            img, seg = F.avg_pool2d(img, k), seg[:, k // 2::k, k // 2::k]
        lr = warmup_cosine_lr(step, cfg.steps, cfg.lr, **cfg.lr_schedule())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast(self.device, self.precision):
            logits = self.model(img)
        loss = F.cross_entropy(logits.float(), seg, weight=self.weights, ignore_index=IGNORE_ID)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        loss_value = all_reduce_mean(loss.detach(), self.d).item()
        return ({"lr": lr, "resolution": img.shape[-1], "train/loss": loss_value}, {"loss": loss_value}, len(img))

    # Evaluation.

    def evaluate(self, step: int) -> tuple[dict[str, Any], dict[str, Any]]:
        scores = evaluate(self.net, self.val_set, batch_size=self.opts.eval_batch_size, device=self.device,
                          workers=self.opts.workers, d=self.d)
        return ({f"val/{k}": v for k, v in scores.items()},
                {k: scores[k] for k in ("pixel_acc", "miou", "mean_acc")})

    # What the runner writes.

    def provenance(self, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
        return {"val": metrics}

    def start_record(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self.cfg), "config": self.net.cfg.to_dict(), "val_images": len(self.val_set),
                "precision": self.precision}

    def summary(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return {**dataclasses.asdict(self.cfg), "val": metrics}


def train_segmenter(opts: SegmenterTrainOptions) -> dict[str, Any]:
    """Run (or resume) a segmenter training; returns a summary (paths, settings, final validation scores)."""
    run = StageRun.open(STAGE, opts.bundle, device=opts.device, resume=opts.resume)
    segmenter_preset(opts.preset or (run.saved_settings or {}).get("preset", "demo"))  # unknown -> ConfigError
    cfg = SegmenterTrainConfig.resolve(opts.preset, opts.overrides, {}, run.saved_settings)
    stage = SegmenterStage(cfg, opts, run)
    return run.fit(stage, cfg, opts)
