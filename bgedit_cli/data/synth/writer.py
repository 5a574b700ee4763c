"""The dataset writer (`bgedit data synth`): scene records, PNG files, the ground truth and the metadata.

Scene i of a seed depends only on (seed, i): its content, style and caption come from the rng streams
(seed, i, 0), (seed, i, 1) and (seed, i, 2). Jobs run in worker processes (fork), each writing its own files
atomically; same arguments -> byte-identical files, whatever the number of workers.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import struct
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from bgedit_cli.data.synth.captions import caption
from bgedit_cli.data.synth.content import layout, sample_content
from bgedit_cli.data.synth.noise import warm_up
from bgedit_cli.data.synth.painting import paint
from bgedit_cli.data.synth.style import STYLE_NAMES, canonical_style, sample_style
from bgedit_cli.data.synth.vocabulary import renderer_vocabulary, write_vocabulary
from bgedit_cli.errors import InputError, OutputExistsError
from bgedit_cli.fileio import atomic_output

SPLITS = ("training", "validation")
METADATA = "metadata.jsonl"
PNG_LEVEL = 1  # zlib level: PNG encoding otherwise dominates the run time


def scene_name(index: int) -> str:
    return f"synth_{index:08d}"


def validation_indices(num: int, val_fraction: float) -> list[int]:
    """round(num * val_fraction) indices spread evenly over 0..num-1 (at least one when the fraction is > 0, and
    at least one training scene unless the fraction is 1: a held-out set, every scene in validation)."""
    if val_fraction >= 1:
        return list(range(num))
    if val_fraction <= 0 or num < 2:
        return []
    n_val = min(max(int(round(num * val_fraction)), 1), num - 1)
    return [int((k + 0.5) * num / n_val) for k in range(n_val)]


def scene_record(seed: int, index: int, split: str) -> dict:
    """Scene `index`'s metadata record; it depends only on (seed, index)."""
    content = sample_content(np.random.default_rng([seed, index, 0]))
    style = sample_style(np.random.default_rng([seed, index, 1]))
    text = caption(content, style, np.random.default_rng([seed, index, 2]))  # its own stream: pixels unchanged
    return {"file": scene_name(index), "split": split, "caption": text, "content": content, "style": style}


def encode_png(pixels: np.ndarray) -> bytes:
    """8-bit greyscale [H, W] or RGB [H, W, 3] -> PNG bytes: "up" filter on every row, zlib level PNG_LEVEL.

    About twice as fast as Pillow's encoder at `compress_level=1` (which tries every filter per row and writes
    files about 10% smaller); the bytes depend only on the array (and zlib), and datasets already rendered are
    these bytes (tests/test_synth_golden.py).
    """
    h, w = pixels.shape[:2]
    color_type = 2 if pixels.ndim == 3 else 0
    rows = np.ascontiguousarray(pixels, np.uint8).reshape(h, -1)
    raw = np.empty((h, rows.shape[1] + 1), np.uint8)
    raw[:, 0] = 2  # filter type "up": each byte minus the byte above it
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw.tobytes(), PNG_LEVEL))
            + chunk(b"IEND", b""))


def _write_png(path: Path, pixels: np.ndarray) -> None:
    with atomic_output(path) as tmp:
        tmp.write_bytes(encode_png(pixels))


def _run_job(job: tuple) -> tuple[int, list[dict]]:
    """Sample, render and write one job (in a worker process) -> (images rendered, metadata records)."""
    kind, out, R = job[0], Path(job[1]), job[2]
    if kind == "scenes":  # ("scenes", out, R, seed, [(index, split), ...])
        records = []
        for index, split in job[4]:
            rec = scene_record(job[3], index, split)
            L = layout(rec["content"], R)
            _write_png(out / "images" / split / f"{rec['file']}.png", paint(L, rec["style"]))
            _write_png(out / "annotations" / split / f"{rec['file']}.png", L.seg)
            records.append(rec)
        return len(records), records
    # ("mix", out, R, a, content_a, [(b, style_b), ...], look names): one layout, many styles.
    a, content, styles, looks = job[3:7]
    L = layout(content, R)
    for b, style in styles:
        _write_png(out / "mixing" / "validation" / f"{a}__{b}.png", paint(L, style))
    for name in looks:
        _write_png(out / "textedit" / "validation" / f"{a}__{name}.png", paint(L, canonical_style(name)))
    return len(styles) + len(looks), []


def _prepare_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder; choose another --out.")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise OutputExistsError(f"{out} exists and is not empty; pass --force to overwrite it "
                                    "(earlier synth_* files there are removed) or choose another --out.")
        for sub in [f"{d}/{s}" for d in ("images", "annotations") for s in SPLITS] + \
                   ["mixing/validation", "textedit/validation"]:
            folder = out / sub
            if folder.is_dir():
                for f in folder.glob("synth_*.png"):
                    f.unlink()
    try:
        for sub in [f"{d}/{s}" for d in ("images", "annotations") for s in SPLITS]:
            (out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder {out}: {exc.strerror or exc}.") from None


def synthesize(out: Path, *, num: int, resolution: int = 256, seed: int = 0, val_fraction: float = 0.1,
               mixing_pairs: int = 8, workers: Optional[int] = None, force: bool = False,
               progress: Optional[Callable[[int, int], None]] = None) -> dict:
    """Write a synthetic dataset to `out` (layout in the package docstring); returns a summary dict.

    `progress(done, total)` counts rendered images (scenes plus mixing/text-edit renders); its first call,
    with done = 0, comes after the worker processes have started. Same arguments -> byte-identical files,
    whatever `workers` is. vocabulary.json and then metadata.jsonl are written last, so an interrupted run
    has no metadata.
    """
    if num < 1:
        raise InputError(f"--num {num}: need at least one scene.")
    if not 16 <= resolution <= 4096:
        raise InputError(f"--resolution {resolution}: expected 16..4096 pixels.")
    if seed < 0:
        raise InputError(f"--seed {seed}: expected a non-negative integer.")
    if not 0 <= val_fraction <= 1:
        raise InputError(f"--val-fraction {val_fraction}: expected a fraction in [0, 1] (1: every scene in "
                         "validation/).")
    if mixing_pairs < 0:
        raise InputError(f"--mixing-pairs {mixing_pairs}: expected 0 or more.")
    workers = workers or min(2, os.cpu_count() or 1)
    if workers < 1:
        raise InputError(f"--workers {workers}: expected 1 or more.")
    out = Path(out)
    start = time.perf_counter()
    _prepare_out(out, force)
    val = validation_indices(num, val_fraction)
    splits = [(i, "training") for i in range(num)]
    for i in val:
        splits[i] = (i, "validation")

    # Jobs: chunks of scenes, then one job per mixing scene (all its style and text-edit renders).
    chunk = max(1, min(16, -(-num // (workers * 8))))
    jobs: list[tuple] = [("scenes", str(out), resolution, seed, splits[i:i + chunk]) for i in range(0, num, chunk)]
    mix = [scene_record(seed, i, "validation") for i in val[:mixing_pairs]]
    if mix:
        for sub in ("mixing/validation", "textedit/validation"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        styles = [(r["file"], r["style"]) for r in mix]
        jobs += [("mix", str(out), resolution, r["file"], r["content"], styles, STYLE_NAMES) for r in mix]
    total = num + len(mix) * (len(mix) + len(STYLE_NAMES))
    report = progress or (lambda done, total: None)

    warm_up()  # forked workers inherit the noise banks
    done, records = 0, []
    if workers == 1 or len(jobs) == 1:
        report(0, total)
        for job in jobs:
            n, recs = _run_job(job)
            done += n
            records += recs
            report(done, total)
    else:
        ctx = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
            futures = [pool.submit(_run_job, job) for job in jobs]
            report(0, total)
            try:
                for fut in as_completed(futures):
                    n, recs = fut.result()
                    done += n
                    records += recs
                    report(done, total)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    records.sort(key=lambda r: r["file"])
    write_vocabulary(out, renderer_vocabulary())
    with atomic_output(out / METADATA) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    seconds = time.perf_counter() - start
    n_val = len(val)
    return {"out": str(out), "num": num, "training": num - n_val, "validation": n_val, "resolution": resolution,
            "seed": seed, "workers": workers, "mixing_scenes": len(mix), "mixing_images": len(mix) ** 2,
            "textedit_images": len(mix) * len(STYLE_NAMES), "seconds": round(seconds, 3),
            "scenes_per_s": round(num / seconds, 1)}
