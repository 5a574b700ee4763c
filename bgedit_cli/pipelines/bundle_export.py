"""`bgedit bundle export SRC DST`: a bundle's inference files, each in fp16 where its output agrees with fp32.

For every network of SRC (generator, segmenter, clip, inversion, inversion-baseline, text, in that order), the
fp16-rounded weights are loaded back into an fp32 network and compared with the original on probes: the
generator's own samples (fixed seeds) or, with `data`, the first validation images of a dataset. Generator and
inversion reconstructions by PSNR (>= 40 dB), the segmenter by the share of pixels with the same class
(>= 99.5%), CLIP and the text editor by the lowest cosine of their outputs (>= 0.999). A network that agrees is
written in fp16, any other in fp32. Files that depend on others by hash (inversion and text on the generator,
text on the CLIP) are re-linked to the exported files' hashes, with the original hashes kept in the provenance
(`export`). Training states, run folders and the model card are not copied. Runs on the CPU.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from bgedit_cli.bundle import BUNDLE_FILES
from bgedit_cli.checkpoint import file_sha256, load_network, read_checkpoint, save_checkpoint
from bgedit_cli.data.ade20k import ADE20KDataset
from bgedit_cli.errors import InputError
from bgedit_cli.fileio import check_writable
from bgedit_cli.io import one_hot_seg
from bgedit_cli.nn.clip_model import ClipEncoder
from bgedit_cli.pipelines.invert import invert

MIN_PSNR, MIN_AGREEMENT, MIN_COSINE = 40.0, 0.995, 0.999
PROBES = 16
EXPORT_ORDER = ("generator", "segmenter", "clip", "inversion", "inversion-baseline", "text")
CLIP_PROMPTS = ("a lake at night", "a snowy mountain", "a village by the sea", "a foggy forest")


@dataclasses.dataclass(frozen=True)
class ExportedFile:
    """One written network: its dtype, the agreement measured (`measure` = `value`) and the hashes re-linked."""

    name: str
    path: Path
    dtype: str  # float16 or float32
    measure: str  # psnr_db, pixel_agreement or min_cosine
    value: float
    bytes: int
    relinked: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, self.measure: round(self.value, 5), "mb": round(self.bytes / 2**20, 2),
                "relinked": self.relinked, "path": str(self.path)}


@dataclasses.dataclass(frozen=True)
class ExportReport:
    source: Path
    out: Path
    files: list[ExportedFile]

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {"source": str(self.source), "out": str(self.out), "files": {f.name: f.to_dict() for f in self.files},
                "total_mb": round(self.total_bytes / 2**20, 2)}


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of two [-1, 1] images (peak-to-peak 2)."""
    mse = (a.float() - b.float()).square().mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(4 / mse)


def fp16_rounded(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of `net` whose floating-point weights went through fp16 (what an fp16 file loads as)."""
    twin = copy.deepcopy(net)
    with torch.no_grad():
        for t in list(twin.parameters()) + list(twin.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())
    return twin


@torch.no_grad()
def agreement(kind: str, net, twin, G, probes: torch.Tensor) -> tuple[str, float, bool]:
    """(measure, value, agrees) of the fp16-rounded `twin` against `net` on the probe images [P, 3, R, R]."""
    if kind == "generator":
        z = torch.randn(PROBES, net.cfg.z_dim, generator=torch.Generator().manual_seed(0))
        value = psnr_db(twin(z, noise_mode="const"), net(z, noise_mode="const"))
        return "psnr_db", value, value >= MIN_PSNR
    if kind == "segmenter":
        value = (twin.predict(probes) == net.predict(probes)).float().mean().item()
        return "pixel_agreement", value, value >= MIN_AGREEMENT
    if kind == "inversion":
        seg = one_hot_seg(torch.zeros(probes.shape[0], *probes.shape[2:], dtype=torch.long)) if net.uses_seg else None
        value = psnr_db(invert(G, twin, probes, seg, steps=5).images, invert(G, net, probes, seg, steps=5).images)
        return "psnr_db", value, value >= MIN_PSNR
    if kind == "clip":
        a, b = ClipEncoder(twin), ClipEncoder(net)
        cos = torch.cat([(a.encode_text(CLIP_PROMPTS) * b.encode_text(CLIP_PROMPTS)).sum(1),
                         (a.encode_image(probes) * b.encode_image(probes)).sum(1)])
        value = cos.min().item()
        return "min_cosine", value, value >= MIN_COSINE
    if kind == "text":
        ws = G.broadcast(G.mapping(torch.randn(PROBES, G.cfg.z_dim, generator=torch.Generator().manual_seed(1))))
        emb = net.prompt_embs[torch.arange(PROBES) % max(1, net.prompt_embs.shape[0])]
        eps = torch.randn(PROBES, net.num_ws, net.w_dim, generator=torch.Generator().manual_seed(2))
        d_a, d_b = twin.edit(ws, emb, eps=eps) - ws, net.edit(ws, emb, eps=eps) - ws
        value = F.cosine_similarity(d_a.flatten(1), d_b.flatten(1)).min().item()
        return "min_cosine", value, value >= MIN_COSINE
    raise ValueError(kind)


def probe_images(G, data: Path | None) -> torch.Tensor:
    """[PROBES, 3, R, R] in [-1, 1]: the first validation images of `data`, else the generator's samples."""
    if data is not None:
        resolution = G.cfg.img_resolution if G is not None else 64
        val = ADE20KDataset(data, "validation", resolution=resolution, flip=False, require_seg=False)
        return torch.stack([val[i]["img"] for i in range(min(PROBES, len(val)))])
    z = torch.randn(PROBES, G.cfg.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return G(z, truncation_psi=0.7, noise_mode="const").clamp(-1, 1)


def export_bundle(src: Path, out: Path, *, data: Path | None = None, force: bool = False,
                  progress: Callable[[str], None] | None = None) -> ExportReport:
    """Write SRC's networks into OUT (see the module doc); `progress(name)` before each network is checked."""
    src, out = Path(src).expanduser(), Path(out).expanduser()
    if not src.is_dir():
        raise InputError(f"{src}: no such bundle folder.")
    names = [n for n in EXPORT_ORDER if (src / BUNDLE_FILES[n]).is_file()]
    if not names:
        raise InputError(f"{src}: holds none of {', '.join(BUNDLE_FILES.values())}; nothing to export.")
    if out.exists() and os.path.realpath(out) == os.path.realpath(src):
        raise InputError(f"{out}: is the source bundle; export into another folder.")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file; give a folder for the exported bundle.")
    for name in names:  # refuse before any work
        check_writable(out / BUNDLE_FILES[name], force)
    g_path = src / BUNDLE_FILES["generator"]
    G = load_network(g_path, "generator").eval() if g_path.is_file() else None
    needs_g = [n for n in names if n in ("inversion", "inversion-baseline", "text")]
    if G is None and (needs_g or data is None):
        raise InputError(f"{g_path}: missing; the generator makes the probe images and checks "
                         f"{', '.join(needs_g) or 'the other networks'} (pass --data DIR for probe images).")
    probes = probe_images(G, data)

    files: list[ExportedFile] = []
    new_sha: dict[str, tuple[str, str]] = {}  # name -> (source sha256, exported sha256)
    for name in names:
        if progress is not None:
            progress(name)
        path = src / BUNDLE_FILES[name]
        kind = "inversion" if name.startswith("inversion") else name
        ckpt = read_checkpoint(path, kind)
        net = load_network(path, kind).eval()
        measure, value, agrees = agreement(kind, net, fp16_rounded(net), G, probes)
        dtype = torch.float16 if agrees else torch.float32
        tensors = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in ckpt.tensors.items()}
        config, provenance = dict(ckpt.config), dict(ckpt.provenance)
        relinked = {}
        for key, dep in (("generator_sha256", "generator"), ("clip_sha256", "clip")):
            if config.get(key) and dep in new_sha and config[key] == new_sha[dep][0]:
                relinked[key] = {"trained_with": config[key], "exported": new_sha[dep][1]}
                config[key] = new_sha[dep][1]
        source_sha = file_sha256(path)
        provenance["export"] = {"source_sha256": source_sha, "dtype": str(dtype).removeprefix("torch."),
                                measure: value, "relinked": relinked}
        dst = out / BUNDLE_FILES[name]
        sha = save_checkpoint(dst, tensors, kind=kind, config=config, provenance=provenance, force=force)
        new_sha[name] = (source_sha, sha)
        load_network(dst, kind)  # loads back
        files.append(ExportedFile(name=name, path=dst, dtype=provenance["export"]["dtype"], measure=measure,
                                  value=value, bytes=dst.stat().st_size, relinked=sorted(relinked)))
    return ExportReport(source=src, out=out, files=files)
