"""Sharded `evaluate` under torchrun (2 gloo processes on CPU): each rank scores its share of the images, the
per-image scores and features are gathered before the statistics, so the JSON holds the numbers of one process,
in bundle mode (reconstruction, FID/KID, SWD) and in folder mode (pairwise metrics, FID/KID)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import test_metrics_distribution
from bgedit_cli.distributed import Dist, contiguous_share
from conftest import REPO
from test_shard import tiny_bundle

inception_file = test_metrics_distribution.inception_file  # a random Inception-v3 in torch-fidelity's format
BATCH = 2

# Runs the CLI once per (stdout file, arguments) in one torchrun process, FID/KID on Inception's 64-d features
# (the same code path without a 2048 x 2048 matrix square root); rank r's stdout goes to FILE.r, and the number
# of images each call of the reconstruction's loop inverts to COUNTS.r.
RUNNER = """
import contextlib, json, os, sys
from bgedit_cli.metrics import features
from bgedit_cli.pipelines.evaluation import reconstruction
features.INCEPTION_LAYER = "64"
invert_items = reconstruction.invert_items

def counted(G, net, dataset, indices, **kwargs):
    with open(f"{sys.argv[2]}.{os.environ['RANK']}", "a") as f:
        f.write(f"{len(indices)}\\n")
    return invert_items(G, net, dataset, indices, **kwargs)

reconstruction.invert_items = counted
from bgedit_cli.cli.app import app
for out, args in json.loads(open(sys.argv[1]).read()):
    with open(f"{out}.{os.environ['RANK']}", "w") as f, contextlib.redirect_stdout(f):
        app(args, prog_name="bgedit", standalone_mode=False)
"""


def comparable(report: dict) -> dict:
    """The JSON without the wall times, the number of processes and this process's device and threads."""
    out = {k: v for k, v in report.items() if k != "seconds"}
    out["settings"] = {k: v for k, v in report["settings"].items() if k not in ("device", "threads", "processes")}
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, inception_file):
    """The same two evaluations (a bundle on 10 scenes; two paired folders of 10 images) in this process and
    under torchrun with 2 processes: {mode: (one process's JSON, rank 0's JSON, rank 1's stdout)}."""
    from bgedit_cli.cli.app import app
    from bgedit_cli.data.synth import synthesize
    from bgedit_cli.metrics import features
    from typer.testing import CliRunner

    root = tmp_path_factory.mktemp("shard_eval")
    bundle = tiny_bundle(root / "bundle")
    synthesize(root / "data", num=10, resolution=16, seed=0, val_fraction=1.0, mixing_pairs=0, workers=1, force=True)
    rng = np.random.default_rng(0)
    for side in ("real", "fake"):
        (root / side).mkdir()
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / side / f"{i}.png")
    common = ["--metrics", "all", "--batch-size", BATCH, "--inception", inception_file, "--device", "cpu", "--json"]
    evaluations = {
        "bundle": ["evaluate", "--data", root / "data", "--model", bundle, "--steps", "1", "--mixing-scenes", "0",
                   *common],
        "folders": ["evaluate", "--real", root / "real", "--fake", root / "fake", "--paired", *common]}
    env = {**os.environ, "BGEDIT_HOME": str(root / "home"), "TORCH_HOME": str(root / "torch"), "OMP_NUM_THREADS": "1",
           "BGEDIT_CPU_BF16": "0"}
    single = {}
    saved = {k: os.environ.get(k) for k in ("BGEDIT_HOME", "TORCH_HOME")}
    layer, features.INCEPTION_LAYER = features.INCEPTION_LAYER, "64"
    os.environ.update(BGEDIT_HOME=env["BGEDIT_HOME"], TORCH_HOME=env["TORCH_HOME"])
    try:
        for mode, args in evaluations.items():
            result = CliRunner().invoke(app, [str(a) for a in args])
            assert result.exit_code == 0, (result.output, result.exception)
            single[mode] = json.loads(result.stdout)
    finally:
        features.INCEPTION_LAYER = layer
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    (root / "runner.py").write_text(RUNNER)
    (root / "runs.json").write_text(json.dumps([[str(root / mode), [str(a) for a in args]]
                                                for mode, args in evaluations.items()]))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(root / "runner.py"), str(root / "runs.json"), str(root / "counts")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The 5 batches of 2 images: rank 0 inverted the first 2, rank 1 the other 3.
    assert [(root / f"counts.{r}").read_text().split() for r in (0, 1)] == [["4"], ["6"]]
    return {mode: (single[mode], json.loads((root / f"{mode}.0").read_text()), (root / f"{mode}.1").read_text())
            for mode in evaluations}


@pytest.mark.parametrize("mode", ["bundle", "folders"])
def test_sharded_evaluate_gives_the_numbers_of_one_process(runs, mode):
    one, sharded, rank1 = runs[mode]
    assert rank1 == ""  # rank 0 alone prints
    assert (one["settings"]["processes"], sharded["settings"]["processes"]) == (1, 2)
    assert comparable(sharded) == comparable(one)
    row = one["rows"][0]
    for metric in ("l2", "psnr", "fid", "kid"):  # numbers, not reasons: the comparison above means something
        assert isinstance(one["metrics"][row][metric]["value"], float), (metric, one["metrics"][row][metric])
    assert one["settings"]["num_images"] in (10, {"real": 10, "fake": 10})


def test_shares_are_whole_batches_in_order():
    for num, world in ((10, 2), (9, 4), (3, 2), (0, 3), (17, 3)):
        shares = [contiguous_share(num, BATCH, Dist(rank=r, world_size=world)) for r in range(world)]
        assert [i for s in shares for i in s] == list(range(num))
        assert all(s.start % BATCH == 0 for s in shares if len(s))
    assert [len(contiguous_share(10, 2, Dist(rank=r, world_size=2))) for r in range(2)] == [4, 6]


def test_gather_items_concatenates_the_ranks_values(monkeypatch):
    import dataclasses

    from bgedit_cli import distributed

    @dataclasses.dataclass
    class Feats:
        real: torch.Tensor
        reason: str | None = None

    values = {"a": torch.arange(3), "b": [torch.ones(2)], "f": Feats(torch.zeros(1, 2), "same")}
    assert distributed.gather_items(values, Dist()) is values
    other = {"a": torch.arange(3, 5), "b": [torch.zeros(1)], "f": Feats(torch.ones(2, 2), "same")}
    empty = {"b": []}  # a rank without items
    monkeypatch.setattr(distributed, "all_gather_objects", lambda obj, d: [values, empty, other])
    out = distributed.gather_items(values, Dist(rank=0, world_size=3))
    assert out["a"].tolist() == [0, 1, 2, 3, 4] and out["b"][0].tolist() == [1, 1, 0]
    assert out["f"].real.tolist() == [[0, 0], [1, 1], [1, 1]] and out["f"].reason == "same"
