"""Sharded `invert` under torchrun (2 gloo processes on CPU): the same files, bytes and `--json` lists as one process,
a broken file on rank 1 reported by rank 0 with the others written; and the split itself (pipelines/batch.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bgedit_cli.distributed import Dist
from bgedit_cli.errors import InputError
from bgedit_cli.pipelines.batch import Source, gather_report, merge_reports, owns, run_batches, share_size
from conftest import REPO

NUM_IMAGES = 24
BATCH = 4
BROKEN_AT = 5  # in batch 1 of 4 inputs: rank 1's


def tiny_bundle(root: Path) -> Path:
    """generator + proposed inversion + segmenter, tiny and random."""
    from bgedit_cli.checkpoint import file_sha256, save_network
    from bgedit_cli.nn.inversion import build_inversion
    from bgedit_cli.nn.segmenter import Segmenter, segmenter_preset
    from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator

    torch.manual_seed(0)
    g = Generator(GENERATOR_PRESETS["tiny"])
    save_network(root / "generator.safetensors", g, kind="generator")
    net = build_inversion("proposed", "tiny", g, file_sha256(root / "generator.safetensors"))
    save_network(root / "inversion.safetensors", net, kind="inversion")
    save_network(root / "segmenter.safetensors", Segmenter(segmenter_preset("tiny")), kind="segmenter")
    return root


def random_images(folder: Path, num: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(num):
        paths.append(folder / f"img{i:02d}.png")
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def torchrun(*args: object, nproc: int = 2, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BGEDIT_CPU_BF16": "0"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), "-m",
           "bgedit_cli", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same `invert --json` of 24 images and one broken file (on rank 1), once in this process and once under
    torchrun with 2 processes, into the same folder name (the single run's folder is renamed after it)."""
    from bgedit_cli.cli.app import app
    from typer.testing import CliRunner

    root = tmp_path_factory.mktemp("shard")
    bundle = tiny_bundle(root / "bundle")
    inputs = random_images(root / "images", NUM_IMAGES)
    broken = root / "images" / "broken.png"
    broken.write_bytes(b"not an image")
    inputs.insert(BROKEN_AT, broken)
    (root / "list.txt").write_text("".join(f"{p}\n" for p in inputs))
    out = root / "out"
    opts = ["--out", out, "--model", bundle, "--steps", "1", "--batch-size", BATCH, "--device", "cpu", "--json"]
    single = CliRunner().invoke(app, ["invert", *map(str, inputs), *map(str, opts)])
    out.rename(root / "single")
    sharded = torchrun("invert", "--files-from", root / "list.txt", *opts)
    return {"root": root, "single": single, "sharded": sharded, "broken": broken}


def test_sharded_invert_equals_one_process(runs):
    single, sharded, root = runs["single"], runs["sharded"], runs["root"]
    assert single.exit_code == 1 and sharded.returncode != 0, (single.stderr, sharded.stderr[-3000:])
    one, two = json.loads(single.stdout), json.loads(sharded.stdout)  # rank 0 alone printed: one JSON document
    assert len(one["outputs"]) == NUM_IMAGES
    assert two["outputs"] == one["outputs"] and two["failed"] == one["failed"] and two == one
    files = sorted(p.name for p in (root / "single").iterdir())
    assert files == sorted(p.name for p in (root / "out").iterdir()) and len(files) == 2 * NUM_IMAGES
    for name in files:
        assert (root / "single" / name).read_bytes() == (root / "out" / name).read_bytes(), name


def test_broken_file_on_rank_1_is_reported_once_and_the_others_written(runs):
    sharded, broken = runs["sharded"], runs["broken"]
    assert owns(Dist(rank=1, world_size=2), BROKEN_AT, BATCH)
    errors = [line for line in sharded.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and str(broken) in errors[0], sharded.stderr
    # Rank 0's exit code 1 is reported by torchrun (ChildFailedError, with the launcher's own traceback); no
    # traceback comes from the processes themselves.
    assert "ChildFailedError" in sharded.stderr and not re.search(r'File ".*bgedit_cli', sharded.stderr)
    report = json.loads(sharded.stdout)
    assert [f["input"] for f in report["failed"]] == [str(broken)]
    assert all(Path(o["image"]).is_file() and Path(o["latent"]).is_file() for o in report["outputs"])


# ----------------------------------------------------------------------------------------------------------
# The split, in one process.


class Echo:
    """A job whose output is OUT/<stem>.txt; `bad*` fails to prepare. Records its batches."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.batches: list[list[str]] = []

    def outputs(self, source):
        return source.path.stem, {"file": self.out / f"{source.path.stem}.txt"}

    def prepare(self, source, outputs):
        if source.path.name.startswith("bad"):
            raise InputError(f"{source.path}: bad")
        return source.path.name

    def process(self, batch):
        self.batches.append(list(batch))
        return batch

    def write(self, item, result, index):
        pass


def test_ranks_take_whole_batches_and_together_cover_every_input_once(tmp_path):
    names = [f"{i}.png" for i in range(11)] + ["bad.png", "0.jpg"]  # 0.jpg: the same stem as 0.png
    job = Echo(tmp_path)
    one = run_batches(job, (Source(Path(n)) for n in names), batch_size=3)
    assert [f.input for f in one.failed] == ["bad.png", "0.jpg"] and "same name stem" in one.failed[1].error
    reports, batches = [], []
    for rank in range(3):
        shard = Dist(rank=rank, world_size=3)
        rank_job = Echo(tmp_path)
        reports.append(run_batches(rank_job, (Source(Path(n)) for n in names), batch_size=3, shard=shard))
        batches += rank_job.batches
        assert len(reports[-1].done) + len(reports[-1].failed) == share_size(len(names), 3, shard)
        assert all(owns(shard, i, 3) for kind in ("done", "failed") for i in reports[-1].index[kind])
    # The same batches as one process, and the same report once merged: the collision of 0.jpg with 0.png (on
    # rank 0) is seen by rank 1, which does 0.jpg, because every rank claims every input's names.
    assert sorted(batches) == sorted(job.batches)
    merged = merge_reports(reports)
    assert merged.done == one.done and merged.failed == one.failed
    assert gather_report(one, Dist()) is one


def test_input_list_and_progress_of_a_rank(tmp_path):
    """The pieces of invert_paths / edit_paths that depend on the rank: stdin is refused under torchrun (every
    process reads the whole list), and progress is rank 0's share only."""
    from bgedit_cli.pipelines.batch import input_paths, stage_progress

    listed = tmp_path / "list.txt"
    listed.write_bytes(b"b.png\0c.png\0")
    paths = input_paths([Path("a.png")], listed, Dist(rank=1, world_size=2))  # every rank reads every input
    assert list(paths) == [Path("a.png"), Path("b.png"), Path("c.png")]
    with pytest.raises(InputError, match="under torchrun every process reads the whole list"):
        input_paths(None, Path("-"), Dist(rank=0, world_size=2))
    input_paths(None, Path("-"), Dist())  # one process may read stdin (lazily: nothing is read here)

    seen = []
    assert stage_progress(seen.append, "inverting", 4, Dist(rank=1, world_size=2)) is None
    assert stage_progress(None, "inverting", 4, Dist()) is None
    advance = stage_progress(lambda *p: seen.append(p), "inverting", 4, Dist(rank=0, world_size=2))
    advance(2)
    advance(1)
    assert seen == [("inverting", 0, 4), ("inverting", 2, 4), ("inverting", 3, 4)]
