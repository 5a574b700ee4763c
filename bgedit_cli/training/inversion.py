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

`--pretrain-steps N` first trains the encoders for N steps on the generator's own samples, where the code is
known: a batch of codes w_layout, w_style (the same code for half of the batch), the image
x = G(rows < seg_layers from w_layout, the rest from w_style), its map s from the bundle's segmenter; the loss is
|E_img(x) - w_style|^2 + |E_seg(s) - w_layout|^2 (the baseline: |E_img(x) - w|^2 on unmixed codes). No
generator backward, so a step is cheap, and the Seg Encoder learns to draw a layout from a map before the image
losses start (docs/training-inversion.md).

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
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch

from bgedit_cli.bundle import bundle_file
from bgedit_cli.checkpoint import file_sha256, load_network
from bgedit_cli.data.ade20k import ADE20KDataset
from bgedit_cli.errors import InputError
from bgedit_cli.io import image_columns, one_hot_seg, save_png
from bgedit_cli.latent import Deltas
from bgedit_cli.losses import LossLambdas, build_inversion_loss
from bgedit_cli.nn.inversion import build_inversion
from bgedit_cli.pipelines.evaluation.reconstruction import reconstruction_scores
from bgedit_cli.pipelines.invert import initial_codes, refine_step, render
from bgedit_cli.runtime import autocast
from bgedit_cli.training.common import average_gradients, mean_scalars, warmup_cosine_lr
from bgedit_cli.training.configs import InversionTrainConfig
from bgedit_cli.training.layout import layout_edit_step, map_only_step
from bgedit_cli.training.runner import DataStream, StageBase, StageOptions, StageRun
from bgedit_cli.training.state import seed_everything

STAGE = "inversion"  # the bundle file's kind
VARIANT_STAGES = {"proposed": "inversion", "baseline": "inversion-baseline"}
ADAM_BETAS = (0.9, 0.999)
GRID_IMAGES = 8
PRETRAIN_PSI = 0.9       # truncation of the generator samples the encoders pre-train on
PRETRAIN_MIX_PROB = 0.5  # share of pre-training samples whose layout and style rows come from different codes


@dataclasses.dataclass
class InversionTrainOptions(StageOptions):
    """The command line's options (see StageOptions), plus loss `lambdas` (None = the preset's), the auxiliary
    weight files, a generator file other than the bundle's, and what validation scores."""

    variant: str = "proposed"
    lambdas: dict[str, float | None] = dataclasses.field(default_factory=dict)
    alexnet: Path | None = None
    moco: Path | None = None
    generator: Path | None = None
    init_from: Path | None = None
    eval_images: int = 64
    eval_steps: int = 5


def resolve_settings(opts: InversionTrainOptions, saved: dict[str, Any] | None) -> InversionTrainConfig:
    """Command line > resumed run > preset defaults. Changing what a run is made of on resume is refused."""
    given = {k: v for k, v in opts.lambdas.items() if v is not None}
    if saved is not None:
        for k, v in given.items():
            if v != saved["lambdas"].get(k, 0.0):
                raise InputError(f"--{k.replace('_', '-')}-lambda {v:g} differs from the resumed run's "
                                 f"{saved['lambdas'].get(k, 0.0):g}; leave it out to resume.")
        return InversionTrainConfig.resolve(opts.preset, {**opts.overrides, "variant": opts.variant}, {}, saved)
    preset = opts.preset or "demo"
    base = InversionTrainConfig.for_preset(preset, variant=opts.variant)
    cfg = base.replace(**{k: v for k, v in opts.overrides.items() if v is not None},
                       lambdas={**base.lambdas, **given})
    LossLambdas(**cfg.lambdas)  # validates (negative, all zero)
    return cfg


# ----------------------------------------------------------------------------------------------------------
# Pieces of the step.


def sample_codes(G, batch: int, seg_layers: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor,
                                                                               torch.Tensor]:
    """Pre-training codes (global RNG): (w_layout, w_style, ws) with ws rows < seg_layers from w_layout."""
    z = torch.randn(2, batch, G.cfg.z_dim, device=device)
    w_layout, w_style = (G.mapping(zz, truncation_psi=PRETRAIN_PSI) for zz in z)
    same = torch.rand(batch, 1, device=device) >= PRETRAIN_MIX_PROB
    w_style = torch.where(same, w_layout, w_style)
    ws = G.broadcast(w_style).clone()
    ws[:, :seg_layers] = w_layout[:, None]
    return w_layout, w_style, ws


def pretrain_step(G, net, segmenter, batch: int, device: torch.device, autocast=None) -> dict[str, float]:
    """Forward and backward of one pre-training batch on generator samples (module doc); returns the scalars."""
    autocast = autocast or nullcontext
    k = net.seg_layers
    with torch.no_grad():
        w_layout, w_style, ws = sample_codes(G, batch, k, device)
        with autocast():
            img = render(G, ws).float().clamp(-1, 1)
            seg = one_hot_seg(segmenter(img).argmax(dim=1)) if net.uses_seg else None
    with autocast():
        w_hat = net.image_encoder(img, G).float()
        lat_hat = net.seg_encoder(seg, G).float() if net.uses_seg else None
    scalars = {"w_img": torch.nn.functional.mse_loss(w_hat, w_style)}
    if lat_hat is not None:
        scalars["w_seg"] = torch.nn.functional.mse_loss(lat_hat, w_layout[:, None].expand_as(lat_hat))
    loss = sum(scalars.values())
    loss.backward()
    return {"loss": float(loss.detach()), **{f"pre/{k}": float(v.detach()) for k, v in scalars.items()}}


def train_step(G, net, loss_fn, img: torch.Tensor, seg: torch.Tensor | None, *, refine_steps: int,
               train_encoders: bool = True, train_hypernets: bool = True, autocast=None
               ) -> tuple[dict[str, float], list[torch.Tensor], tuple[torch.Tensor, Deltas | None]]:
    """Forward and backward passes of one batch (gradients accumulate in the parameters; no optimizer step).

    Returns the scalars to log (`loss` = sum over iterations, `y<t>/<term>` per iteration), the images
    y_0 .. y_T and the codes (w, final delta_img), all detached. With `train_encoders=False` the encoders run without gradients; with
    `train_hypernets=False` there is no refinement.
    """
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
        w, _, ws = initial_codes(G, net, img, seg)
        y = render(G, ws)
    if train_encoders:
        account(0, y).backward()
    else:
        account(0, y)
    images = [y.detach()]
    delta_img = None
    if train_hypernets:
        ws, y = ws.detach(), y.detach()
        x_seg = seg if net.uses_seg else None
        delta_seg = None
        for t in range(1, refine_steps + 1):
            with autocast():
                delta_img, delta_seg, y = refine_step(G, net, img, x_seg, ws, delta_img, delta_seg, y)
            account(t, y).backward()
            images.append(y.detach())
    scalars["loss"] = total
    if delta_img is not None:
        delta_img = {k: v.detach() for k, v in delta_img.items()}
    return scalars, images, (w.detach(), delta_img)


# ----------------------------------------------------------------------------------------------------------
# The stage.


class InversionStage(StageBase):
    """The inversion networks' part of a run (training/runner.py drives it) against a frozen generator."""

    kind = STAGE

    def __init__(self, cfg: InversionTrainConfig, opts: InversionTrainOptions, run: StageRun, G, g_path: Path,
                 g_sha: str) -> None:
        super().__init__(cfg, opts, run)
        self.name = VARIANT_STAGES[cfg.variant]
        self.resume_args = f"inversion --variant {cfg.variant}"
        self.G, self.g_path, self.g_sha = G, g_path, g_sha
        resolution = G.cfg.img_resolution
        self.uses_seg = cfg.variant == "proposed"

        # Load data (both splits checked before anything is written).
        self.dataset = ADE20KDataset(opts.data, "training", resolution=resolution, flip=True,
                                     require_seg=self.uses_seg, seed=cfg.seed)
        self.val_set = ADE20KDataset(opts.data, "validation", resolution=resolution, flip=False,
                                     require_seg=self.uses_seg)
        if len(self.dataset) < cfg.batch_size:
            raise InputError(f"{opts.data}: {len(self.dataset)} training image(s), fewer than one batch of "
                             f"{cfg.batch_size}; lower --batch-size or add data.")

        # Losses (auxiliary weights are looked up now: a missing file fails before training starts).
        self.loss_fn = build_inversion_loss(LossLambdas(**cfg.lambdas), alexnet=opts.alexnet, moco=opts.moco,
                                            resolution=resolution, device=self.device)
        self.loss_info = self.loss_fn.describe(resolution)

        # Build networks (same seed on every rank: identical initial weights).
        seed_everything(cfg.seed)
        split = {"seg_layers": cfg.seg_layers} if cfg.seg_layers and cfg.variant == "proposed" else {}
        net = build_inversion(cfg.variant, cfg.preset, G, g_sha, **split).to(self.device).train()
        if opts.init_from is not None and run.state is None:  # a resumed run has its own weights
            start = load_network(opts.init_from, "inversion")
            theirs, ours = start.state_dict(), net.state_dict()
            if (start.variant, start.seg_layers) != (net.variant, net.seg_layers) or theirs.keys() != ours.keys() \
                    or any(theirs[k].shape != ours[k].shape for k in ours):
                raise InputError(f"--init-from {opts.init_from}: its networks differ from this run's (variant, "
                                 "preset, --seg-layers or generator shapes); use a file of the same kind of run.")
            start.check_generator(G)
            net.load_state_dict(start.state_dict())
        if self.d.enabled and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules()):
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        self.net = net
        self.encoders = [m for m in (net.image_encoder, net.seg_encoder) if m is not None]
        self.hypernets = [m for m in (net.hyper_img, net.hyper_seg) if m is not None]
        self.params = [p for p in net.parameters() if p.requires_grad]
        self.segmenter = None
        if (cfg.pretrain_steps or cfg.edit_layout_lambda) and self.uses_seg:
            self.segmenter = load_network(bundle_file(run.bundle, "segmenter"), "segmenter", self.device).eval()
            self.segmenter.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.lr, betas=ADAM_BETAS)
        self.num_eval = min(opts.eval_images, len(self.val_set))

    # State.

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator_sha256": self.g_sha}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])

    # The step.

    def train_step(self, step: int, batches: DataStream) -> tuple[dict[str, Any], dict[str, float], int]:
        cfg = self.cfg
        amp = partial(autocast, self.device, self.precision)
        if step < cfg.pretrain_steps:
            batch = cfg.batch_size // self.d.world_size
            lr, scalars = self._update(step, True, False, lambda: pretrain_step(
                self.G, self.net, self.segmenter, batch, self.device, autocast=amp))
            return ({"lr": lr, "phase": "pretrain", **{f"train/{k}": v for k, v in scalars.items()}},
                    {"loss": scalars["loss"]}, batch)
        batch = batches.next()
        img = batch["img"].to(self.device, non_blocking=True)
        seg = one_hot_seg(batch["seg"].to(self.device)) if self.uses_seg else None
        encoder_phase = step < cfg.encoder_steps
        train_enc = cfg.schedule == "joint" or encoder_phase
        train_hyp = (cfg.schedule == "joint" or not encoder_phase) and cfg.refine_steps > 0
        lr, scalars = self._update(step, train_enc, train_hyp, lambda: self._backward(
            img, seg, train_enc=train_enc, train_hyp=train_hyp, autocast=amp))
        phase = "encoders" if encoder_phase else ("joint" if cfg.schedule == "joint" else "hypernetworks")
        last_t = max(t for t in range(cfg.refine_steps + 1) if f"y{t}/loss" in scalars)
        return ({"lr": lr, "phase": phase, **{f"train/{k}": v for k, v in scalars.items()}},
                {"loss": scalars["loss"], f"y{last_t}": scalars[f"y{last_t}/loss"]}, img.shape[0])

    def _backward(self, img: torch.Tensor, seg: torch.Tensor | None, *, train_enc: bool, train_hyp: bool,
                  autocast) -> dict[str, float]:
        """The reconstruction step's passes, then the seg-path terms of training/layout.py on the codes it found:
        the layout edit (`edit_layout_lambda`) and the map-only reconstruction (`map_only_lambda`)."""
        cfg = self.cfg
        scalars, _, (w, delta_img) = train_step(self.G, self.net, self.loss_fn, img, seg,
                                                refine_steps=cfg.refine_steps, train_encoders=train_enc,
                                                train_hypernets=train_hyp, autocast=autocast)
        if cfg.edit_layout_lambda and self.uses_seg and img.shape[0] > 1:
            edit = layout_edit_step(self.G, self.net, self.segmenter, img, seg, w, delta_img,
                                    refine_steps=cfg.refine_steps if train_hyp else 0,
                                    layout_lambda=cfg.edit_layout_lambda, look_lambda=cfg.edit_look_lambda,
                                    autocast=autocast)
            scalars = {**scalars, **edit, "loss": scalars["loss"] + edit["edit/loss"]}
        if cfg.map_only_lambda and self.uses_seg:
            own = map_only_step(self.G, self.net, self.loss_fn, img, seg, w,
                                refine_steps=cfg.refine_steps if train_hyp else 0, weight=cfg.map_only_lambda,
                                autocast=autocast)
            scalars = {**scalars, **own, "loss": scalars["loss"] + own["maponly/loss"]}
        return scalars

    def _update(self, step: int, train_enc: bool, train_hyp: bool,
                backward: Callable[[], dict[str, float]]) -> tuple[float, dict[str, float]]:
        """One optimizer step: the step's learning rate, which networks train, `backward()` (forward and backward
        passes, returning the scalars to log), gradients averaged over ranks. Returns (lr, scalars over ranks)."""
        lr = warmup_cosine_lr(step, self.cfg.steps, self.cfg.lr, **self.cfg.lr_schedule())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        for m in self.encoders:  # frozen encoders also stop updating batch-norm statistics
            m.requires_grad_(train_enc).train(train_enc)
        for m in self.hypernets:
            m.requires_grad_(train_hyp)
        self.optimizer.zero_grad(set_to_none=True)
        scalars = backward()
        average_gradients(self.params, self.d)
        self.optimizer.step()
        return lr, mean_scalars(scalars, self.d, self.device)

    # Evaluation (rank 0): reconstruction scores per refinement step and a sample grid.

    def evaluate(self, step: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
        if not self.d.is_main or self.num_eval == 0:
            return {}, None
        self.net.eval()
        try:
            scores, grid = reconstruction_scores(self.G, self.net, self.val_set, num=self.num_eval,
                                                 steps=self.opts.eval_steps,
                                                 batch_size=max(self.cfg.batch_size // self.d.world_size, 8),
                                                 device=self.device, grid_images=GRID_IMAGES)
        finally:
            self.net.train()
        flat = {f"val/{k}": v for k, v in scores["final"].items()}
        for t, per_step in enumerate(scores["per_step"]):
            flat.update({f"val/y{t}/{k}": v for k, v in per_step.items()})
        save_png(self.run_dir / "samples" / f"step-{step:06d}.png", image_columns(grid), force=True)
        return ({"event": "eval", "ms_ssim_variant": scores["ms_ssim_variant"], **flat},
                {"images": self.num_eval, "steps": self.opts.eval_steps, **scores["final"]})

    # What the runner writes.

    def provenance(self, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
        return {"variant": self.cfg.variant, "losses": self.loss_info, "parents": {"generator": self.g_sha},
                "init_from": str(self.opts.init_from) if self.opts.init_from else None,
                "val": metrics}

    def start_record(self) -> dict[str, Any]:
        return {"stage": self.name, "encoder_steps": self.cfg.encoder_steps, "pretrain_steps": self.cfg.pretrain_steps, "losses": self.loss_info,
                "config": self.net.cfg.to_dict(), "parameters": self.net.num_parameters(),
                "generator": str(self.g_path), "generator_sha256": self.g_sha, "precision": self.precision,
                "val_images": len(self.val_set)}

    def summary(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return {**dataclasses.asdict(self.cfg), "losses": self.loss_info, "val": metrics,
                "generator_sha256": self.g_sha}


def train_inversion(opts: InversionTrainOptions) -> dict[str, Any]:
    """Run (or resume) an inversion training; returns a summary (paths, settings, final validation scores)."""
    stage_name = VARIANT_STAGES.get(opts.variant)
    if stage_name is None:
        raise InputError(f"--variant {opts.variant}: expected one of {', '.join(VARIANT_STAGES)}.")
    run = StageRun.open(stage_name, opts.bundle, device=opts.device, resume=opts.resume)

    # The frozen generator (checked before anything is written).
    g_path = bundle_file(run.bundle, "generator", override=opts.generator)
    G = load_network(g_path, "generator", run.device)
    g_sha = file_sha256(g_path)
    if run.state is not None and run.state["generator_sha256"] != g_sha:
        raise InputError(f"{g_path} is not the generator the resumed run trained against "
                         f"({run.state['generator_sha256'][:12]}...); resume with that generator.")

    cfg = resolve_settings(opts, run.saved_settings)
    stage = InversionStage(cfg, opts, run, G, g_path, g_sha)
    return run.fit(stage, cfg, opts)
