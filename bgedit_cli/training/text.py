"""Stage 5: train the text editor (StyleCLIP levels mapper + the paper's Text Encoder) against a frozen
generator and a frozen CLIP (`bgedit train text`).

Reads `BUNDLE/generator.safetensors`, a CLIP (`--clip FILE`, else `BUNDLE/clip.safetensors`, else OpenAI's
`ViT-B-32.pt` in `$BGEDIT_HOME/weights/clip/`) and, for codes from inversions, `BUNDLE/inversion.safetensors`.
Writes `BUNDLE/text.safetensors` (kind `text`) and `runs/text-<time>/` (log, samples, state, snapshots).

Training codes: the encoders' W+ codes of the training split (the inversion model's, computed once and cached
in `BUNDLE/cache/`, reused on resume), the generator's own samples (truncated), or both. Each code in a batch
is paired with a prompt drawn independently of it, and one step is (paper eq. 3 and 4):

    ws' = ws + alpha * M(ws, t) + (1 - alpha) * (mu(t) + sigma(t) * eps)      # t: the prompt's CLIP embedding
    L = clip_lambda * (1 - cos(CLIP_img(G(ws')), t)) + sim_lambda * L_sim(G(ws'), G(ws))
        [+ latent_lambda * |ws' - ws|^2] [+ direction_lambda * (1 - cos(CLIP_img(G(ws')) - CLIP_img(G(ws)), t - t0))]
        [+ layout_lambda * CE(S(G(ws')), argmax S(G(ws)))]     # only for the prompts of --keep-layout

The layout term (`--layout-lambda`, in the spirit of HairCLIP's background loss with a face parser) asks the
bundle's frozen segmenter S to read a restyle as it reads the unedited image; prompts that should move the
layout ("ocean") are left out of it, so the mapper learns per prompt whether to keep the map.

`L_sim` is MoCo v2 similarity when `moco_v2_800ep_pretrain.pth.tar` is found, else the CLIP image tower as a
stated stand-in (the log's start record and the file's provenance say which). Only the text editor is updated.
The codes are rendered without the inversion's weight deltas here (StyleCLIP trains on W+ codes the same way);
`bgedit text-edit` applies the edit to the faithful reconstruction, deltas included.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bgedit_cli.bundle import bundle_file
from bgedit_cli.checkpoint import file_sha256, load_network, read_checkpoint, save_checkpoint
from bgedit_cli.data.ade20k import ADE20KDataset
from bgedit_cli.data.synth import read_vocabulary
from bgedit_cli.errors import InputError
from bgedit_cli.io import image_columns, one_hot_seg, save_png
from bgedit_cli.losses.clip_loss import build_similarity_loss, clip_loss
from bgedit_cli.nn.clip_model import ClipEncoder
from bgedit_cli.nn.segmenter import Segmenter
from bgedit_cli.nn.stylegan2 import Generator
from bgedit_cli.nn.text_encoder import TextEditor, build_text_editor
from bgedit_cli.pipelines.invert import initial_codes, render
from bgedit_cli.pipelines.models import load_clip
from bgedit_cli.runtime import autocast
from bgedit_cli.training.common import Dist, average_gradients, mean_scalars
from bgedit_cli.training.configs import TextTrainConfig
from bgedit_cli.training.runner import DataStream, StageBase, StageOptions, StageRun
from bgedit_cli.training.state import seed_everything

STAGE = "text"
VAL_CODES, GRID_ROWS = 8, 6
CODE_BATCH = 32  # images per encoder pass when inverting the training split
EVAL_SEED = 0  # eps of the evaluation edits


@dataclasses.dataclass
class TextTrainOptions(StageOptions):
    """The command line's options (see StageOptions), plus the CLIP / MoCo files and generator / inversion
    files other than the bundle's."""

    clip: Path | None = None
    moco: Path | None = None
    generator: Path | None = None
    inversion: Path | None = None


# ----------------------------------------------------------------------------------------------------------
# Codes to edit.


class Codes(torch.utils.data.Dataset):
    """W+ codes [N, num_ws, w_dim] as a dataset of {"ws": [num_ws, w_dim]}."""

    def __init__(self, ws: torch.Tensor) -> None:
        self.ws = ws

    def __len__(self) -> int:
        return self.ws.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"ws": self.ws[index]}


@torch.no_grad()
def sample_codes(G: Generator, num: int, *, seed: int, truncation: float, device: torch.device) -> torch.Tensor:
    """The generator's own codes: w = mapping(z) truncated toward w_avg, broadcast to W+ [num, num_ws, w_dim]."""
    z = torch.randn(num, G.cfg.z_dim, generator=torch.Generator().manual_seed(seed))
    out = [G.broadcast(G.mapping(z[i:i + 256].to(device), truncation_psi=truncation)).cpu()
           for i in range(0, num, 256)]
    return torch.cat(out)


@torch.no_grad()
def inverted_codes(G: Generator, net, data: Path, split: str, num: int, device: torch.device) -> torch.Tensor:
    """The encoders' W+ codes of (up to) `num` evenly spaced images of `split` [num, num_ws, w_dim]."""
    dataset = ADE20KDataset(data, split, resolution=G.cfg.img_resolution, flip=False, require_seg=net.uses_seg)
    n = min(num, len(dataset))
    if n < 1:
        raise InputError(f"{data}: no {split} images to invert for the text training codes.")
    index = torch.linspace(0, len(dataset) - 1, n).round().long().tolist()
    out = []
    for start in range(0, n, CODE_BATCH):
        items = [dataset[i] for i in index[start:start + CODE_BATCH]]
        img = torch.stack([it["img"] for it in items]).to(device)
        seg = one_hot_seg(torch.stack([it["seg"] for it in items]).to(device)) if net.uses_seg else None
        out.append(initial_codes(G, net, img, seg)[2].float().cpu())
    return torch.cat(out)


def training_codes(cfg: TextTrainConfig, G: Generator, g_sha: str, bundle: Path, data: Path, split: str, num: int,
                   inversion: Path | None, device: torch.device, d: Dist) -> tuple[torch.Tensor, dict[str, Any]]:
    """The codes of `split` as `cfg.latent_source` says, cached in `BUNDLE/cache/` by what they depend on."""
    source = cfg.latent_source
    n_inv = num if source == "inversion" else num // 2 if source == "both" else 0
    key: dict[str, Any] = {"generator": g_sha, "source": source, "num": num, "split": split,
                           "truncation": cfg.truncation, "seed": cfg.seed}
    net = None
    if n_inv:
        inv_path = bundle_file(bundle, "inversion", override=inversion)
        key.update(inversion=file_sha256(inv_path), data=str(Path(data).resolve()))
        net = load_network(inv_path, "inversion", device).eval()
        net.check_generator(G, g_sha)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    cache = Path(bundle) / "cache" / f"text-codes-{split}-{digest}.safetensors"
    if cache.is_file():
        return read_checkpoint(cache, "text-codes").tensors["ws"], {**key, "cache": str(cache)}
    parts = []
    if n_inv:
        parts.append(inverted_codes(G, net, data, split, n_inv, device))
    if num - n_inv > 0:
        seed = cfg.seed if split == "training" else cfg.seed + 1
        parts.append(sample_codes(G, num - n_inv, seed=seed, truncation=cfg.truncation, device=device))
    ws = torch.cat(parts).contiguous()
    if d.is_main:
        save_checkpoint(cache, {"ws": ws}, kind="text-codes", config=key, provenance={}, force=True)
    return ws, {**key, "cache": str(cache)}


# ----------------------------------------------------------------------------------------------------------
# The stage.


class TextStage(StageBase):
    """The text editor's part of a run (training/runner.py drives it)."""

    name = kind = resume_args = STAGE

    def __init__(self, cfg: TextTrainConfig, opts: TextTrainOptions, run: StageRun, G: Generator, g_sha: str,
                 encoder: ClipEncoder, codes: torch.Tensor, val_codes: torch.Tensor, codes_info: dict,
                 segmenter: Segmenter | None = None) -> None:
        super().__init__(cfg, opts, run)
        self.G, self.g_sha, self.encoder, self.codes_info = G, g_sha, encoder, codes_info
        self.segmenter = segmenter
        self.dataset, self.val_codes = Codes(codes), val_codes
        if len(self.dataset) < cfg.batch_size:
            raise InputError(f"{len(self.dataset)} training code(s), fewer than one batch of {cfg.batch_size}; "
                             "lower --batch-size or raise --num-latents.")

        # Prompts: CLIP text embeddings, fixed for the run.
        self.prompt_embs = encoder.encode_text(list(cfg.prompts)).detach()
        preset = cfg.preset
        seed_everything(cfg.seed)
        self.editor: TextEditor = build_text_editor(
            G.cfg, encoder.embed_dim, preset, prompts=cfg.prompts, text_encoder=cfg.text_encoder,
            condition=cfg.condition, alpha=cfg.alpha, clip_name=encoder.name, clip_sha256=encoder.sha256,
            generator_sha256=g_sha).to(self.device).train()
        self.neutral_emb = encoder.encode_text([self.editor.cfg.neutral_prompt]).detach()
        keep = set(layout_prompts(cfg, opts.data)) if segmenter is not None else set()
        self.keep_layout = torch.tensor([p in keep for p in cfg.prompts], device=self.device)
        self.editor.set_prompts(self.prompt_embs.cpu().to(self.editor.prompt_embs), self.neutral_emb[0])
        self.sim_loss, self.sim_name = build_similarity_loss(encoder, opts.moco, device=self.device)
        self.params = [p for p in self.editor.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.lr)
        self.net = self.editor

    # State.

    def state_dict(self) -> dict[str, Any]:
        return {"editor": self.editor.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator_sha256": self.g_sha, "clip_sha256": self.encoder.sha256}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.editor.load_state_dict(state["editor"])
        self.optimizer.load_state_dict(state["optimizer"])

    # The step.

    def losses(self, ws: torch.Tensor, prompt: torch.Tensor, eps: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """(loss, terms, edited images) for codes `ws` [N, num_ws, w_dim] and prompt indices `prompt` [N]."""
        cfg = self.cfg
        emb = self.prompt_embs[prompt]
        with torch.no_grad(), autocast(self.device, self.precision):
            recon = render(self.G, ws).float()
        ws_edit = self.editor.edit(ws, emb, alpha=cfg.alpha, strength=1.0, eps=eps)
        with autocast(self.device, self.precision):
            img = render(self.G, ws_edit).float()
        terms = {"clip": clip_loss(self.encoder, img, emb).mean()}
        if cfg.sim_lambda > 0:
            terms["sim"] = self.sim_loss(img, recon).mean()
        if cfg.latent_lambda > 0:
            terms["latent"] = (ws_edit - ws).square().mean()
        if cfg.direction_lambda > 0:
            with torch.no_grad():
                recon_f = self.encoder.encode_image(recon)
            change = self.encoder.encode_image(img) - recon_f
            direction = F.normalize(emb - self.neutral_emb, dim=1)
            terms["direction"] = (1 - F.cosine_similarity(change, direction, dim=1)).mean()
        if cfg.layout_lambda > 0 and self.segmenter is not None:
            terms["layout"] = self.layout_loss(img, recon, self.keep_layout[prompt])
        weights = {"clip": cfg.clip_lambda, "sim": cfg.sim_lambda, "latent": cfg.latent_lambda,
                   "direction": cfg.direction_lambda, "layout": cfg.layout_lambda}
        loss = sum(weights[k] * v for k, v in terms.items())
        return loss, terms, img

    def layout_loss(self, img: torch.Tensor, recon: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Mean per-pixel cross-entropy of the segmenter's reading of the edits `img` against its classes for the
        reconstructions `recon`, over the samples whose prompt keeps the layout (`keep` [N] bool); the mean
        over the whole batch, so the term's weight does not depend on how many such samples a batch drew. The
        segmenter runs on those samples only."""
        if not bool(keep.any()):
            return img.new_zeros(())
        img, recon = img[keep], recon[keep]
        with torch.no_grad(), autocast(self.device, self.precision):
            target = self.segmenter(recon).argmax(dim=1)
        with autocast(self.device, self.precision):
            logits = self.segmenter(img).float()
        return F.cross_entropy(logits, target, reduction="none").mean(dim=(1, 2)).sum() / keep.numel()

    def train_step(self, step: int, batches: DataStream) -> tuple[dict[str, Any], dict[str, float], int]:
        ws = batches.next()["ws"].to(self.device, non_blocking=True)
        prompt = torch.randint(len(self.cfg.prompts), (ws.shape[0],), device=self.device)  # independent of ws
        loss, terms, _ = self.losses(ws, prompt)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(self.params, self.d)
        self.optimizer.step()
        scalars = {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}}
        scalars = mean_scalars(scalars, self.d, self.device)
        return {f"train/{k}": v for k, v in scalars.items()}, {"loss": scalars["loss"]}, ws.shape[0]

    # Evaluation (rank 0): does CLIP see the prompt more in the edit than in the reconstruction?

    @torch.no_grad()
    def evaluate(self, step: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
        if not self.d.is_main:
            return {}, None
        self.editor.eval()
        try:
            ws = self.val_codes.to(self.device)
            n, num_prompts = ws.shape[0], len(self.cfg.prompts)
            recon = render(self.G, ws).float()
            before = self.encoder.encode_image(recon) @ self.prompt_embs.t()  # (n, P)
            eps = None
            if self.editor.text_encoder is not None:
                eps = torch.randn((1, self.editor.num_ws, self.editor.w_dim),
                                  generator=torch.Generator().manual_seed(EVAL_SEED)).to(self.device)
            columns, after = [recon.cpu()], torch.zeros_like(before)
            for p in range(num_prompts):
                prompt = torch.full((n,), p, device=self.device)
                emb = self.prompt_embs[prompt]
                img = render(self.G, self.editor.edit(ws, emb, alpha=self.cfg.alpha, strength=1.0,
                                                      eps=None if eps is None else eps.expand(n, -1, -1))).float()
                after[:, p] = (self.encoder.encode_image(img) * emb).sum(dim=1)
                columns.append(img.cpu())
        finally:
            self.editor.train()
        gain = after - before
        metrics = {"clip_gain": float(gain.mean()), "clip_rise": float((gain > 0).float().mean()),
                   **{f"clip_gain/{name}": float(gain[:, p].mean()) for p, name in enumerate(self.cfg.prompts)}}
        save_png(self.run_dir / "samples" / f"step-{step:06d}.png",
                 image_columns([c[:GRID_ROWS] for c in columns]), force=True)
        return {"event": "eval", **{f"val/{k}": v for k, v in metrics.items()}}, metrics

    # What the runner writes.

    def provenance(self, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
        return {"parents": {"generator": self.g_sha, "clip": self.encoder.sha256,
                            "inversion": self.codes_info.get("inversion")},
                "similarity_loss": self.sim_name, "codes": self.codes_info, "val": metrics}

    def start_record(self) -> dict[str, Any]:
        return {"similarity_loss": self.sim_name, "clip": self.encoder.name, "clip_sha256": self.encoder.sha256,
                "generator_sha256": self.g_sha, "codes": self.codes_info, "precision": self.precision,
                "parameters": self.editor.num_parameters(), "config": self.editor.cfg.to_dict()}

    def summary(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return {**dataclasses.asdict(self.cfg), "similarity_loss": self.sim_name, "val": metrics}


def layout_prompts(cfg: TextTrainConfig, data: Path) -> tuple[str, ...]:
    """The prompts whose edits must keep the layout: `--keep-layout`, else the trained prompts that are named looks
    of the data at `data` (its vocabulary.json; the renderer's looks for a folder without one)."""
    return cfg.layout_prompts(read_vocabulary(data).style_names)


def train_text(opts: TextTrainOptions) -> dict[str, Any]:
    """Run (or resume) a text-editor training; returns a summary (paths, settings, CLIP gains on held-out codes)."""
    run = StageRun.open(STAGE, opts.bundle, device=opts.device, resume=opts.resume)
    cfg = TextTrainConfig.resolve(opts.preset, opts.overrides, {"latent_source": "--latents"}, run.saved_settings)

    # The frozen networks (checked before anything is written).
    g_path = bundle_file(run.bundle, "generator", override=opts.generator)
    G = load_network(g_path, "generator", run.device).eval().requires_grad_(False)
    g_sha = file_sha256(g_path)
    encoder = load_clip(run.bundle, opts.clip, run.device)
    segmenter = None
    if cfg.layout_lambda > 0:
        if not layout_prompts(cfg, opts.data):
            raise InputError("--layout-lambda: no trained prompt keeps the layout; name them with --keep-layout.")
        segmenter = load_network(bundle_file(run.bundle, "segmenter"), "segmenter", run.device)
        segmenter = segmenter.eval().requires_grad_(False)
    if run.state is not None:
        for what, saved, now in (("generator", run.state["generator_sha256"], g_sha),
                                 ("CLIP", run.state["clip_sha256"], encoder.sha256)):
            if saved != now:
                raise InputError(f"the resumed run trained against another {what} ({saved[:12]}...); resume with "
                                 "that file.")

    # Codes: training split and a few held-out ones (validation split or other samples).
    codes, info = training_codes(cfg, G, g_sha, run.bundle, opts.data, "training", cfg.num_latents,
                                 opts.inversion, run.device, run.d)
    val_codes, _ = training_codes(cfg, G, g_sha, run.bundle, opts.data, "validation", VAL_CODES, opts.inversion,
                                  run.device, run.d)
    stage = TextStage(cfg, opts, run, G, g_sha, encoder, codes, val_codes, info, segmenter)
    return run.fit(stage, cfg, opts)
