"""Train a small CLIP on captioned scenes (`bgedit train clip`): the image-text space of the text stage when
OpenAI's weights are not used.

Symmetric InfoNCE (`nn/clip_model.contrastive_loss`) on the (image, caption) pairs of the training split
(`data/captions.py`), with AdamW (CLIP's betas 0.9/0.98 and eps 1e-6; weight decay 0.1 on matrices only), the
config's learning-rate schedule (by default a linear warm-up over 5% of the steps, <= 2000, then cosine to 0), and
seeded horizontal flips. Captions are tokenized with OpenAI's BPE at the network's context length (longer ones
are cut). Under torchrun each process contrasts its own share of the batch and the gradients are averaged.

The network is `clip_config(cfg.network)` at the image resolution of the bundle's generator when
`BUNDLE/generator.safetensors` exists (the text stage shows CLIP generated images), else the preset's.

Every `eval_every` steps and at the end, on the validation split:
- `val/loss`: the contrastive loss over batches of `batch_size`, in file order;
- `val/zs_style`: zero-shot accuracy of the look (day, sunset, night, snow, fog, autumn): each image takes the look
  whose mean prompt embedding is nearest (cosine); prompts and labels in `data/captions.py`;
- `val/zs_<factor>`: the same for each content factor of `CONTENT_WORDS` (water, ground, ...; 'none' a class
  where a scene may lack the factor).
Chance (1 / classes) and the validation set's majority rate per task are in the log's start record and the summary.
Writes `BUNDLE/clip.safetensors` (kind `clip`, config = ClipConfig) and `runs/clip-<time>/` (log, state, snapshots).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from bgedit_cli.bundle import bundle_file
from bgedit_cli.checkpoint import read_checkpoint
from bgedit_cli.data.captions import CaptionDataset, task_prompts, zero_shot_labels
from bgedit_cli.errors import InputError
from bgedit_cli.nn.clip_model import ClipConfig, ClipEncoder, ClipModel, clip_config, contrastive_loss, tokenize
from bgedit_cli.runtime import autocast
from bgedit_cli.training.common import all_reduce_mean, average_gradients, warmup_cosine_lr
from bgedit_cli.training.configs import ClipTrainConfig
from bgedit_cli.training.runner import DataStream, StageBase, StageOptions, StageRun
from bgedit_cli.training.state import seed_everything

STAGE = "clip"
ADAM_BETAS, ADAM_EPS, WEIGHT_DECAY = (0.9, 0.98), 1e-6, 0.1


class ClipTrainOptions(StageOptions):
    """The command line's options (see StageOptions)."""


def network_config(network: str, bundle: Path) -> ClipConfig:
    """`clip_config(network)` at the resolution of the bundle's generator, when it has one."""
    cfg = clip_config(network)
    g_path = bundle_file(bundle, "generator", must_exist=False)
    if not g_path.is_file():
        return cfg
    resolution = int(read_checkpoint(g_path, "generator").config["img_resolution"])
    if resolution % cfg.vision_patch_size:
        raise InputError(f"{g_path} makes {resolution} px images, not a multiple of the {network} CLIP's "
                         f"{cfg.vision_patch_size} px patches; train the CLIP in a bundle with a larger generator.")
    return dataclasses.replace(cfg, image_resolution=resolution)


def decay_groups(net: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: weight decay on matrices, none on gains, biases and the logit scale."""
    params = list(net.parameters())
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


def zero_shot_tasks(dataset: CaptionDataset) -> dict[str, dict[str, Any]]:
    """task -> classes, labelled images, chance (1 / classes) and the majority class's rate on `dataset`."""
    tasks = {}
    for task, (classes, labels) in zero_shot_labels(dataset.records).items():
        known = [label for label in labels if label is not None]
        tasks[task] = {"classes": classes, "labels": labels, "images": len(known), "chance": 1 / len(classes),
                       "majority": max(known.count(k) for k in set(known)) / len(known)}
    return tasks


@torch.no_grad()
def evaluate(model: ClipModel, dataset: CaptionDataset, tasks: dict[str, dict[str, Any]], *, batch_size: int,
             device: torch.device) -> dict[str, float]:
    """{"loss": contrastive loss over batches of `batch_size`, "zs_<task>": zero-shot accuracy} on `dataset`
    (a frozen copy of `model`: training continues on the original)."""
    enc = ClipEncoder(copy.deepcopy(model))
    total, img_f = 0.0, []
    for batch in DataLoader(dataset, batch_size=batch_size):
        img = batch["img"].to(device)
        tokens = tokenize(batch["caption"], enc.context_length, truncate=True).to(device)
        total += contrastive_loss(enc.model, img, tokens).item() * len(img)
        img_f.append(enc.encode_image(img))
    scores = {"loss": total / len(dataset)}
    sims = torch.cat(img_f)
    for task, info in tasks.items():
        prompts = task_prompts(task)
        class_f = F.normalize(torch.stack([enc.encode_text(prompts[c]).mean(0) for c in info["classes"]]), dim=-1)
        pred = (sims @ class_f.t()).argmax(dim=1).tolist()
        hits = [p == label for p, label in zip(pred, info["labels"]) if label is not None]
        scores[f"zs_{task}"] = sum(hits) / len(hits)
    return scores


# ----------------------------------------------------------------------------------------------------------
# The stage.


class ClipStage(StageBase):
    """CLIP's part of a run (training/runner.py drives it): network, optimizer, one step, evaluation."""

    name = kind = resume_args = STAGE

    def __init__(self, cfg: ClipTrainConfig, opts: ClipTrainOptions, run: StageRun) -> None:
        super().__init__(cfg, opts, run)
        self.net_cfg = (ClipConfig.from_dict(run.state["clip_config"]) if run.state is not None
                        else network_config(cfg.network, run.bundle))

        # Load data (both splits and their captions checked before anything is written).
        resolution = self.net_cfg.image_resolution
        self.dataset = CaptionDataset(opts.data, "training", resolution, flip=True, seed=cfg.seed)
        self.val_set = CaptionDataset(opts.data, "validation", resolution)
        if len(self.dataset) < cfg.batch_size:
            raise InputError(f"{opts.data}: {len(self.dataset)} training image(s), fewer than one batch of "
                             f"{cfg.batch_size}; lower --batch-size or add data.")
        self.tasks = zero_shot_tasks(self.val_set)

        # Build networks.
        seed_everything(cfg.seed)
        self.net = ClipModel(self.net_cfg).to(self.device).train()
        self.optimizer = torch.optim.AdamW(decay_groups(self.net, WEIGHT_DECAY), lr=cfg.lr, betas=ADAM_BETAS,
                                           eps=ADAM_EPS)

    # State.

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "clip_config": self.net_cfg.to_dict(),
                "schedule": {"name": "warmup-cosine", "base_lr": self.cfg.lr, "total_steps": self.cfg.steps,
                             **self.cfg.lr_schedule()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])

    # The step.

    def train_step(self, step: int, batches: DataStream) -> tuple[dict[str, Any], dict[str, float], int]:
        batch = batches.next()
        img = batch["img"].to(self.device, non_blocking=True)
        tokens = tokenize(batch["caption"], self.net_cfg.context_length, truncate=True).to(self.device)
        lr = warmup_cosine_lr(step, self.cfg.steps, self.cfg.lr, **self.cfg.lr_schedule())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast(self.device, self.precision):
            loss = contrastive_loss(self.net, img, tokens)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(list(self.net.parameters()), self.d)
        self.optimizer.step()
        loss_value = all_reduce_mean(loss.detach(), self.d).item()
        return ({"lr": lr, "train/loss": loss_value, "logit_scale": round(self.net.logit_scale.exp().item(), 4)},
                {"loss": loss_value}, len(img))

    # Evaluation.

    def evaluate(self, step: int) -> tuple[dict[str, Any], dict[str, Any]]:
        scores = evaluate(self.net, self.val_set, self.tasks, batch_size=self.cfg.batch_size, device=self.device)
        return {f"val/{k}": v for k, v in scores.items()}, scores

    # What the runner writes.

    def zero_shot_baselines(self) -> dict[str, dict[str, Any]]:
        return {task: {k: info[k] for k in ("classes", "images", "chance", "majority")}
                for task, info in self.tasks.items()}

    def provenance(self, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
        return {"val": metrics, "zero_shot": self.zero_shot_baselines()}

    def start_record(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self.cfg), "config": self.net_cfg.to_dict(), "val_images": len(self.val_set),
                "precision": self.precision, "zero_shot": self.zero_shot_baselines()}

    def summary(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return {**dataclasses.asdict(self.cfg), "val": metrics, "zero_shot": self.zero_shot_baselines(),
                "image_resolution": self.net_cfg.image_resolution}


def train_clip(opts: ClipTrainOptions) -> dict[str, Any]:
    """Run (or resume) a CLIP training; returns a summary (paths, settings, final validation scores)."""
    run = StageRun.open(STAGE, opts.bundle, device=opts.device, resume=opts.resume)
    cfg = ClipTrainConfig.resolve(opts.preset, opts.overrides, {}, run.saved_settings)
    stage = ClipStage(cfg, opts, run)
    return run.fit(stage, cfg, opts)
