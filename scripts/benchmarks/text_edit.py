"""Text edit (`bgedit text-edit` after the inversion: mapper + Text Encoder on the code, then the generator with
the inversion's weight deltas): seconds per image at demo and paper-256 sizes, random weights, batch 1 and 8,
per precision (fp32, and bf16 autocast where the CPU has bf16 instructions or on CUDA).

The prompt's CLIP embedding is computed once per call, not per image, so it is not timed; the inversion is
`scripts/benchmarks/invert.py`'s row. `cpu_sec_per_image` (process CPU time / images) is given on CPU because
wall time on a shared machine includes waiting for other processes.
"""

from __future__ import annotations

import time

import torch

from benchmarks.common import precisions
from bgedit_cli.latent import Inversion
from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator
from bgedit_cli.nn.text_encoder import build_text_editor
from bgedit_cli.pipelines.text_edit import text_edit
from bgedit_cli.runtime import autocast

TEXT_DIM = {"demo": 128, "paper-256": 512}  # the demo CLIP's embedding, OpenAI ViT-B/32's


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_text_edit(g: Generator, editor, batch: int, device: torch.device, precision: str, repeats: int
                   ) -> tuple[float, float]:
    """(wall seconds per image, process CPU seconds per image) of `text_edit` on `batch` inverted images."""
    gen = torch.Generator().manual_seed(0)
    ws = (torch.randn(batch, g.cfg.num_ws, g.cfg.w_dim, generator=gen) * 0.5).to(device)
    deltas = {k: torch.zeros(batch, *shape, device=device) for k, shape in g.layer_shapes().items()}
    inv = Inversion(ws=ws, w=ws[:, -1], delta_img=deltas)
    emb = torch.nn.functional.normalize(torch.randn(1, editor.text_dim, generator=gen), dim=1).to(device)
    with autocast(device, precision):
        text_edit(g, inv, editor, emb, seed=0)  # warm-up
        _sync(device)
        t, c = time.perf_counter(), time.process_time()
        for _ in range(repeats):
            text_edit(g, inv, editor, emb, seed=0)
        _sync(device)
    return (time.perf_counter() - t) / (repeats * batch), (time.process_time() - c) / (repeats * batch)


def run(quick: bool = False) -> list[dict]:
    rows = []
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        for preset in ("demo", "paper-256"):
            torch.manual_seed(0)
            g = Generator(GENERATOR_PRESETS[preset]).eval().requires_grad_(False).to(device)
            editor = build_text_editor(g.cfg, TEXT_DIM[preset], preset, prompts=("ocean",)).eval().to(device)
            slow = device.type == "cpu" and preset == "paper-256"
            for precision in precisions(device):
                for batch in (1,) if (quick and slow) else (1, 8):
                    repeats = 10 if device.type == "cuda" and not quick else (1 if slow or quick else 3)
                    sec, cpu_sec = time_text_edit(g, editor, batch, device, precision, repeats)
                    rows.append({"bench": "text-edit", "preset": preset, "device": device.type, "batch": batch,
                                 "precision": precision, "sec_per_image": round(sec, 4),
                                 **({"cpu_sec_per_image": round(cpu_sec, 4), "threads": torch.get_num_threads()}
                                    if device.type == "cpu" else {}),
                                 "text_params_m": round(editor.num_parameters()["total"] / 1e6, 2)})
            del g, editor
    return rows


if __name__ == "__main__":
    import json

    for row in run():
        print(json.dumps(row))
