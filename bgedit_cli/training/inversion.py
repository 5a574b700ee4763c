"""Stage 3: train the inversion networks (encoders + HyperStyle hypernetworks) against a frozen generator.

Reads `BUNDLE/generator.safetensors` (frozen; its sha256 goes into the inversion config) and an ADE20K-layout
folder (images + annotations; the baseline needs no annotations). Writes, under the bundle:
- `inversion.safetensors` (`--variant proposed`) or `inversion-baseline.safetensors` (`--variant baseline`),
  kind `inversion`, at every snapshot and at the end;
- `runs/inversion-<time>/` (`runs/inversion-baseline-<time>/`): `log.jsonl` (a `start` record with the exact
  losses and lambdas, one record per step, one per validation), `samples/step-<N>.png` (rows: validation
  images; columns: input | y_0 | y_1 .. y_T), `state.safetensors` (everything `--resume` needs) and
  `snapshots/`.

One training step on a batch x (one-hot maps s), HyperStyle's iterative refinement with the encoders trained
in the same step ("joint", the default):

    w, seg_latents, ws = initial_codes(G, net, x, s)       # encoders
    y_0 = G(ws)                      loss(y_0, x).backward()           -> trains the encoders
    ws, y = ws.detach(), y_0
    for t in 1..refine_steps:       # refine_step detaches y_{t-1} and the incoming deltas
        delta_img += H_img(x, y); delta_seg += H_seg(s, y); y_t = G(ws, deltas)
        loss(y_t, x).backward()                                         -> trains the hypernetworks
    optimizer.step()                 # one Adam step on the summed gradients

`--schedule phased` instead trains the encoders alone (y_0 loss only, no refinement) for the first
`--encoder-fraction` of the steps, then freezes them and trains the hypernetworks on the refinement losses
(HyperStyle's own setting, where the W encoder is pretrained and frozen). The generator is never updated.

The loss is `bgedit_cli.losses.InversionLoss`: paper-256 defaults to HyperStyle's L2 1.0 + LPIPS-Alex 0.8 +
MoCo 0.5 (auxiliary weights needed: a clear error when missing); tiny and demo default to weight-free losses
so that they run offline. Resume continues bit for bit on CPU (data order, flips, RNG, optimizer state).
Under torchrun every rank computes its share of the batch; gradients are averaged over ranks after the
backward passes (one flattened all-reduce), and only rank 0 writes files.
"""

from __future__ import annotations

import dataclasses
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from bgedit_cli.bundle import latest_run_dir
from bgedit_cli.errors import InputError

STAGE = "inversion"
VARIANT_STAGES = {"proposed": "inversion", "baseline": "inversion-baseline"}
SCHEDULES = ("joint", "phased")
PRECISIONS = ("auto", "fp32", "bf16")

# Training defaults per preset (each overridable on the command line). Loss lambdas: the keys of
# bgedit_cli.losses.LossLambdas. tiny/demo use weight-free losses only (see docs/training-inversion.md).
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "tiny": {"steps": 40, "batch_size": 4, "lr": 1e-3, "refine_steps": 2,
             "lambdas": {"l2": 1.0, "lpips": 0.0, "moco": 0.0, "ms_ssim": 0.0, "msl1": 0.0}},
    # demo: L2 + MS-SSIM + multi-scale L1 measured best of three weight-free sets (docs/training-inversion.md).
    "demo": {"steps": 1500, "batch_size": 8, "lr": 5e-4, "refine_steps": 3,
             "lambdas": {"l2": 1.0, "lpips": 0.0, "moco": 0.0, "ms_ssim": 0.5, "msl1": 1.0}},
    # HyperStyle's README training command: batch 8, lr 1e-4, 5 iterations per batch, 500k steps max.
    "paper-256": {"steps": 500_000, "batch_size": 8, "lr": 1e-4, "refine_steps": 5,
                  "lambdas": {"l2": 1.0, "lpips": 0.8, "moco": 0.5, "ms_ssim": 0.0, "msl1": 0.0}},
}
WARMUP_FRACTION, MAX_WARMUP, FINAL_LR_FRACTION = 0.02, 500, 0.1
ADAM_BETAS = (0.9, 0.999)
GRID_IMAGES = 8


@dataclasses.dataclass
class InversionTrainOptions:
    """What the command line gives; None means the preset's default (or, with `resume`, the run's own)."""

    data: Path
    bundle: Path
    variant: str = "proposed"
    preset: str | None = None
    steps: int | None = None
    refine_steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int | None = None
    schedule: str | None = None
    encoder_fraction: float | None = None
    lambdas: dict[str, float | None] = dataclasses.field(default_factory=dict)
    alexnet: Path | None = None
    moco: Path | None = None
    generator: Path | None = None
    resume: bool = False
    device: str = "auto"
    precision: str = "auto"
    workers: int = 0
    eval_every: int | None = None
    eval_images: int = 64
    eval_steps: int = 5
    snapshot_every: int | None = None
    force: bool = False
    progress: bool = True


@dataclasses.dataclass
class Settings:
    """What a run is made of; stored in its state so that `--resume` keeps it."""

    variant: str
    preset: str
    steps: int
    refine_steps: int
    batch_size: int
    lr: float
    seed: int
    schedule: str
    encoder_fraction: float
    lambdas: dict[str, float]

    @property
    def encoder_steps(self) -> int:
        """Steps of the encoder-only phase (0 for the joint schedule)."""
        return int(round(self.encoder_fraction * self.steps)) if self.schedule == "phased" else 0

    def command(self, data: Path, bundle: Path, world_size: int = 1) -> str:
        launch = f"torchrun --nproc_per_node {world_size} -m bgedit_cli" if world_size > 1 else "bgedit"
        lambdas = " ".join(f"--{k.replace('_', '-')}-lambda {v:g}" for k, v in self.lambdas.items())
        return (f"{launch} train inversion --data {data} --model {bundle} --variant {self.variant} "
                f"--preset {self.preset} --steps {self.steps} --refine-steps {self.refine_steps} "
                f"--batch-size {self.batch_size} --lr {self.lr:g} --seed {self.seed} --schedule {self.schedule} "
                + (f"--encoder-fraction {self.encoder_fraction:g} " if self.schedule == "phased" else "") + lambdas)


def lr_at(step: int, total: int, base_lr: float) -> float:
    """Learning rate of step `step` (0-based): linear warm-up over 2% of the steps (<= 500), then cosine
    from `base_lr` down to 10% of it."""
    warmup = min(MAX_WARMUP, max(1, int(WARMUP_FRACTION * total)))
    if step < warmup:
        return base_lr * (step + 1) / warmup
    t = min((step - warmup) / max(1, total - warmup), 1.0)
    return base_lr * (FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * t)))


def resolve_settings(opts: InversionTrainOptions, saved: dict[str, Any] | None) -> Settings:
    """Command line > resumed run > preset defaults. Changing what a run is made of on resume is refused."""
    from bgedit_cli.losses import LOSS_NAMES, LossLambdas
    from bgedit_cli.nn.inversion import INVERSION_PRESETS, VARIANTS

    given_lambdas = {k: v for k, v in opts.lambdas.items() if v is not None}
    unknown = sorted(set(given_lambdas) - set(LOSS_NAMES))
    if unknown:
        raise InputError(f"unknown loss(es) {', '.join(unknown)}; known: {', '.join(LOSS_NAMES)}.")
    if saved is not None:
        for name in ("preset", "refine_steps", "batch_size", "lr", "seed", "schedule", "encoder_fraction"):
            given = getattr(opts, name)
            if given is not None and given != saved[name]:
                flag = "--" + name.replace("_", "-")
                raise InputError(f"{flag} {given} differs from the resumed run's {saved[name]}; leave {flag} out "
                                 "to resume, or start a new run without --resume.")
        for k, v in given_lambdas.items():
            if v != saved["lambdas"].get(k, 0.0):
                raise InputError(f"--{k.replace('_', '-')}-lambda {v:g} differs from the resumed run's "
                                 f"{saved['lambdas'].get(k, 0.0):g}; leave it out to resume.")
        return Settings(**{**saved, "steps": opts.steps or saved["steps"]})
    if opts.variant not in VARIANTS:
        raise InputError(f"--variant {opts.variant}: expected one of {', '.join(VARIANTS)}.")
    preset = opts.preset or "demo"
    if preset not in INVERSION_PRESETS:
        raise InputError(f"--preset {preset}: expected one of {', '.join(INVERSION_PRESETS)}.")
    schedule = opts.schedule or "joint"
    if schedule not in SCHEDULES:
        raise InputError(f"--schedule {schedule}: expected one of {', '.join(SCHEDULES)}.")
    defaults = TRAIN_DEFAULTS[preset]
    lambdas = {**defaults["lambdas"], **given_lambdas}
    LossLambdas(**lambdas)  # validates (negative, all zero)
    settings = Settings(variant=opts.variant, preset=preset, steps=opts.steps or defaults["steps"],
                        refine_steps=opts.refine_steps if opts.refine_steps is not None else defaults["refine_steps"],
                        batch_size=opts.batch_size or defaults["batch_size"], lr=opts.lr or defaults["lr"],
                        seed=opts.seed if opts.seed is not None else 0, schedule=schedule,
                        encoder_fraction=opts.encoder_fraction if opts.encoder_fraction is not None else 0.5,
                        lambdas=lambdas)
    if settings.steps < 1 or settings.batch_size < 1 or not settings.lr > 0 or settings.refine_steps < 0:
        raise InputError("--steps, --batch-size and --lr must be positive, --refine-steps >= 0.")
    if not 0 <= settings.encoder_fraction <= 1:
        raise InputError(f"--encoder-fraction {settings.encoder_fraction}: expected a fraction in [0, 1].")
    if settings.schedule == "phased" and settings.refine_steps == 0:
        raise InputError("--schedule phased trains the hypernetworks after the encoders: give --refine-steps >= 1.")
    return settings


def resume_run_dir(bundle: Path, stage: str, d) -> Path:
    """The newest run folder of exactly `stage` with a saved state (`inversion-<time>` never matches an
    `inversion-baseline-<time>` run), decided on rank 0 and shared with the other ranks."""
    path = None
    if d.is_main:
        path = latest_run_dir(bundle, stage)
        if path is None:
            raise InputError(f"--resume: no {stage} run with a saved state under {Path(bundle) / 'runs'}; "
                             "start without --resume.")
    if d.enabled:
        import torch.distributed as dist

        box = [str(path) if path else None]
        dist.broadcast_object_list(box, src=0)
        path = Path(box[0])
    return path


# ----------------------------------------------------------------------------------------------------------
# Pieces of the step.


def train_step(G, net, loss_fn, img: torch.Tensor, seg: torch.Tensor | None, *, refine_steps: int,
               train_encoders: bool = True, train_hypernets: bool = True, autocast=None
               ) -> tuple[dict[str, float], list[torch.Tensor]]:
    """Forward and backward passes of one batch (gradients accumulate in the parameters; no optimizer step).

    Returns the scalars to log (`loss` = sum over iterations, `y<t>/<term>` per iteration) and the images
    y_0 .. y_T (detached). With `train_encoders=False` the encoders run without gradients; with
    `train_hypernets=False` there is no refinement.
    """
    from bgedit_cli.pipelines.invert import initial_codes, refine_step, render

    autocast = autocast or nullcontext
    scalars: dict[str, float] = {}
    total = 0.0

    def account(t: int, y: torch.Tensor) -> torch.Tensor:
        nonlocal total
        loss, terms = loss_fn(y.float(), img)
        total += float(loss.detach())
        scalars[f"y{t}/loss"] = float(loss.detach())
        for k, v in terms.items():
            scalars[f"y{t}/{k}"] = float(v.detach())
        return loss

    with torch.set_grad_enabled(train_encoders), autocast():
        _, _, ws = initial_codes(G, net, img, seg)
        y = render(G, ws)
    if train_encoders:
        account(0, y).backward()
    else:
        account(0, y)
    images = [y.detach()]
    if train_hypernets:
        ws, y = ws.detach(), y.detach()
        x_seg = seg if net.uses_seg else None
        delta_img = delta_seg = None
        for t in range(1, refine_steps + 1):
            with autocast():
                delta_img, delta_seg, y = refine_step(G, net, img, x_seg, ws, delta_img, delta_seg, y)
            account(t, y).backward()
            images.append(y.detach())
    scalars["loss"] = total
    return scalars, images


def sync_gradients(params: list[torch.nn.Parameter], d) -> None:
    """Average the gradients over ranks with one flattened all-reduce (no-op for one process). Parameters
    without a gradient on every rank (a frozen phase) are skipped consistently: the phase is the same on all."""
    if not d.enabled:
        return
    import torch.distributed as dist

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= d.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def image_grid(rows: list[torch.Tensor]) -> "numpy.ndarray":  # noqa: F821
    """Columns of images [N, 3, R, R] in [-1, 1] side by side -> one uint8 HWC grid (N rows)."""
    import numpy as np

    from bgedit_cli.io import to_uint8

    cols = [to_uint8(c) for c in rows]  # each [N, R, R, 3]
    return np.concatenate([np.concatenate(list(c), axis=0) for c in cols], axis=1)


def resolve_precision(name: str, device: torch.device) -> str:
    if name not in PRECISIONS:
        raise InputError(f"--precision {name}: expected one of {', '.join(PRECISIONS)}.")
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if name == "bf16" and device.type != "cuda":
        raise InputError("--precision bf16 is for CUDA (on CPU bf16 is ~200x slower than fp32); use fp32 or auto.")
    return name


# ----------------------------------------------------------------------------------------------------------
# The loop.


def train_inversion(opts: InversionTrainOptions) -> dict[str, Any]:
    """Run (or resume) an inversion training; returns a summary (paths, settings, final validation scores)."""
    from bgedit_cli.bundle import bundle_file
    from bgedit_cli.checkpoint import check_writable, file_sha256, load_network
    from bgedit_cli.data.ade20k import ADE20KDataset
    from bgedit_cli.io import one_hot_seg, save_png
    from bgedit_cli.losses import LossLambdas, build_inversion_loss
    from bgedit_cli.nn.inversion import build_inversion
    from bgedit_cli.pipelines.evaluate_mixing import reconstruction_scores
    from bgedit_cli.training.common import (RunLog, StopRequest, TrainProgress, TrainingInterrupted,
                                            all_reduce_mean, init_distributed, resumable_batches, run_dir_for,
                                            save_snapshot, split_batch, train_device)
    from bgedit_cli.training.state import gather_rng_states, load_state, restore_rng_states, save_state, seed_everything

    # Devices and processes (torchrun sets WORLD_SIZE > 1 for DDP).
    bundle = Path(opts.bundle).expanduser()
    d = init_distributed(train_device(opts.device))
    device = train_device(opts.device, d)
    precision = resolve_precision(opts.precision, device)
    stage = VARIANT_STAGES.get(opts.variant)
    if stage is None:
        raise InputError(f"--variant {opts.variant}: expected one of {', '.join(VARIANT_STAGES)}.")

    # The frozen generator (checked before anything is written).
    g_path = bundle_file(bundle, "generator", override=opts.generator)
    G = load_network(g_path, "generator", device)
    g_sha = file_sha256(g_path)

    # Settings, and the state of the run to resume.
    state = None
    run_dir: Path | None = None
    if opts.resume:
        run_dir = resume_run_dir(bundle, stage, d)
        state = load_state(run_dir / "state.safetensors")
        if state["settings"]["variant"] != opts.variant:
            raise InputError(f"{run_dir} is a {state['settings']['variant']} run; resume it with --variant "
                             f"{state['settings']['variant']}.")
        if state["generator_sha256"] != g_sha:
            raise InputError(f"{g_path} is not the generator the resumed run trained against "
                             f"({state['generator_sha256'][:12]}...); resume with that generator.")
    settings = resolve_settings(opts, state["settings"] if state else None)
    local_batch = split_batch(settings.batch_size, d)
    eval_every = opts.eval_every if opts.eval_every is not None else max(1, settings.steps // 10)
    snapshot_every = opts.snapshot_every if opts.snapshot_every is not None else max(1, settings.steps // 10)
    resolution = G.cfg.img_resolution
    uses_seg = settings.variant == "proposed"

    # Load data (both splits checked before anything is written).
    train_set = ADE20KDataset(opts.data, "training", resolution=resolution, flip=True, require_seg=uses_seg,
                              seed=settings.seed)
    val_set = ADE20KDataset(opts.data, "validation", resolution=resolution, flip=False, require_seg=uses_seg)
    if len(train_set) < settings.batch_size:
        raise InputError(f"{opts.data}: {len(train_set)} training image(s), fewer than one batch of "
                         f"{settings.batch_size}; lower --batch-size or add data.")

    # Losses (auxiliary weights are looked up now: a missing file fails before training starts).
    lambdas = LossLambdas(**settings.lambdas)
    loss_fn = build_inversion_loss(lambdas, alexnet=opts.alexnet, moco=opts.moco, resolution=resolution,
                                   device=device)

    # Output paths.
    out_path = bundle_file(bundle, stage, must_exist=False)
    if not opts.resume:
        if d.is_main and not opts.force:
            check_writable(out_path, False)  # refuse before training, not after
        run_dir, _ = run_dir_for(bundle, stage, False, d)
    assert run_dir is not None
    log = RunLog(run_dir / "log.jsonl" if d.is_main else None,
                 start_time=time.time() - (state["wall_seconds"] if state else 0.0))

    # Build networks (same seed on every rank: identical initial weights).
    seed_everything(settings.seed)
    net = build_inversion(settings.variant, settings.preset, G, g_sha).to(device).train()
    if d.enabled and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules()):
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    encoders = [m for m in (net.image_encoder, net.seg_encoder) if m is not None]
    hypernets = [m for m in (net.hyper_img, net.hyper_seg) if m is not None]
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=settings.lr, betas=ADAM_BETAS)

    # Resume.
    step, epoch, position, metrics = 0, 0, 0, {}
    if state is not None:
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        restore_rng_states(state["rng"], d, fallback_seed=settings.seed + state["step"])
        step, epoch, position = state["step"], state["data"]["epoch"], state["data"]["position"]
        metrics = state["metrics"]
    loss_info = loss_fn.describe(resolution)
    log.write(event="resume" if state else "start", step=step, run=str(run_dir), stage=stage,
              **dataclasses.asdict(settings), encoder_steps=settings.encoder_steps, losses=loss_info,
              config=net.cfg.to_dict(), parameters=net.num_parameters(), generator=str(g_path),
              generator_sha256=g_sha, world_size=d.world_size, device=str(device), precision=precision,
              train_images=len(train_set), val_images=len(val_set))

    # Fixed validation images for sample grids and scores.
    num_eval = min(opts.eval_images, len(val_set))
    autocast = ((lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if precision == "bf16" else nullcontext)

    def provenance() -> dict[str, Any]:
        return {"command": settings.command(Path(opts.data).resolve(), bundle.resolve(), d.world_size),
                "data": str(Path(opts.data).resolve()), "steps": step, "variant": settings.variant,
                "preset": settings.preset, "settings": dataclasses.asdict(settings), "losses": loss_info,
                "parents": {"generator": g_sha}, "run": str(run_dir), "val": metrics,
                "wall_minutes": round((time.time() - log.t0) / 60, 2)}

    def save_resumable() -> None:
        rngs = gather_rng_states(d)
        if d.is_main:
            save_state(run_dir / "state.safetensors", {
                "net": net.state_dict(), "optimizer": optimizer.state_dict(), "rng": rngs,
                "settings": dataclasses.asdict(settings), "step": step, "generator_sha256": g_sha,
                "data": {"epoch": epoch, "position": position}, "metrics": metrics,
                "wall_seconds": time.time() - log.t0})

    def snapshot() -> None:
        if d.is_main:
            save_snapshot(net, STAGE, out_path, run_dir, stage, step, provenance())
        save_resumable()

    def run_eval() -> None:
        nonlocal metrics
        if not d.is_main or num_eval == 0:
            return
        net.eval()
        try:
            scores, grid = reconstruction_scores(G, net, val_set, num=num_eval, steps=opts.eval_steps,
                                                 batch_size=max(local_batch, 8), device=device,
                                                 grid_images=GRID_IMAGES)
        finally:
            net.train()
        metrics = {"images": num_eval, "steps": opts.eval_steps, **scores["final"]}
        flat = {f"val/{k}": v for k, v in scores["final"].items()}
        for t, s in enumerate(scores["per_step"]):
            flat.update({f"val/y{t}/{k}": v for k, v in s.items()})
        log.write(step=step, event="eval", ms_ssim_variant=scores["ms_ssim_variant"], **flat)
        save_png(run_dir / "samples" / f"step-{step:06d}.png", image_grid(grid), force=True)

    # Train.
    batches = resumable_batches(train_set, settings.batch_size, seed=settings.seed, epoch=epoch, position=position,
                                workers=opts.workers, d=d, pin_memory=device.type == "cuda")
    with StopRequest() as stop, TrainProgress(settings.steps, step, description=stage,
                                              enabled=opts.progress and d.is_main) as bar:
        while step < settings.steps:
            if stop.check(d):
                save_resumable()
                raise TrainingInterrupted(
                    f"interrupted at step {step}/{settings.steps}; the state is saved in {run_dir}. Continue with "
                    f"`bgedit train inversion --data {opts.data} --model {bundle} --variant {settings.variant} "
                    "--resume`.")
            epoch, position, batch = next(batches)
            img = batch["img"].to(device, non_blocking=True)
            seg = one_hot_seg(batch["seg"].to(device)) if uses_seg else None
            lr = lr_at(step, settings.steps, settings.lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            encoder_phase = step < settings.encoder_steps
            train_enc = settings.schedule == "joint" or encoder_phase
            train_hyp = (settings.schedule == "joint" or not encoder_phase) and settings.refine_steps > 0
            for m in encoders:  # frozen encoders also stop updating batch-norm statistics
                m.requires_grad_(train_enc).train(train_enc)
            for m in hypernets:
                m.requires_grad_(train_hyp)
            optimizer.zero_grad(set_to_none=True)
            scalars, _ = train_step(G, net, loss_fn, img, seg, refine_steps=settings.refine_steps,
                                    train_encoders=train_enc, train_hypernets=train_hyp, autocast=autocast)
            sync_gradients(params, d)
            optimizer.step()
            step += 1

            if d.enabled:  # log the mean over ranks
                keys = sorted(scalars)
                vec = torch.tensor([scalars[k] for k in keys], dtype=torch.float64, device=device)
                scalars = dict(zip(keys, all_reduce_mean(vec, d).tolist()))
            log.write(step=step, epoch=epoch, lr=lr, phase="encoders" if encoder_phase else
                      ("joint" if settings.schedule == "joint" else "hypernetworks"),
                      **{f"train/{k}": v for k, v in scalars.items()})
            last_t = max(t for t in range(settings.refine_steps + 1) if f"y{t}/loss" in scalars)
            bar.update(1, local_batch * d.world_size, loss=scalars["loss"], **{f"y{last_t}": scalars[f"y{last_t}/loss"]})
            last = step == settings.steps
            if last or (eval_every > 0 and step % eval_every == 0):
                run_eval()
            if last or (snapshot_every > 0 and step % snapshot_every == 0):
                snapshot()

    if state is not None and step == state["step"] and step >= settings.steps:  # resumed a finished run
        run_eval()
        snapshot()
    return {"is_main": d.is_main, "model": str(out_path), "run": str(run_dir), "steps": step,
            **dataclasses.asdict(settings), "losses": loss_info, "val": metrics,
            "wall_seconds": round(time.time() - log.t0, 1), "generator_sha256": g_sha}
