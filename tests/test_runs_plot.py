"""`bgedit runs plot`: a metric's curves from run logs as a PNG (training/plots.py, drawn with Pillow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import assert_clean_error


def write_log(run: Path, scale: float = 1.0) -> Path:
    """A generator-like log: a record per step, SWD per level at every 50th."""
    run.mkdir(parents=True)
    with open(run / "log.jsonl", "w") as f:
        f.write(json.dumps({"event": "start", "step": 0, "settings": {"swd/64": "not a record"}}) + "\n")
        for s in range(1, 201):
            rec = {"step": s, "minutes": s / 10, "loss/G": 1.0}
            if s % 50 == 0:
                rec |= {"event": "snapshot", "kimg": s * 0.004, "swd/64": scale * (90 - s / 5),
                        "swd/32": scale * (60 - s / 10), "swd/avg": scale * (75 - s / 7)}
            f.write(json.dumps(rec) + "\n")
    return run


def colour_pixels(path: Path, rgb: tuple[int, int, int]) -> int:
    return int((np.asarray(Image.open(path).convert("RGB")) == rgb).all(axis=2).sum())


def test_one_run_draws_every_level(cli, tmp_path):
    from bgedit_cli.training.plots import PALETTE, run_series

    run = write_log(tmp_path / "runs" / "generator-20260101-000000")
    series = run_series([run])
    assert [s.name for s in series] == ["swd/64", "swd/32", "swd/avg"]  # finest level first, the average last
    assert series[0].points == [(5.0, 80.0), (10.0, 70.0), (15.0, 60.0), (20.0, 50.0)]
    assert [x for x, _ in run_series([run / "log.jsonl"], x="kimg")[2].points] == [0.2, 0.4, 0.6, 0.8]

    out = tmp_path / "swd.png"
    res = cli(["runs", "plot", run, "--out", out, "--floor", "25", "--mark", "12=budget"])
    assert res.exit_code == 0, (res.stderr, res.exception)
    assert Image.open(out).size == (760, 420)
    assert colour_pixels(out, PALETTE[0]) > 100 and colour_pixels(out, PALETTE[1]) > 100  # the two levels
    assert_clean_error(cli(["runs", "plot", run, "--out", out]), "already exists", "--force")
    assert cli(["runs", "plot", run, "--out", out, "--force", "--quiet"]).exit_code == 0


def test_several_runs_one_line_each(cli, tmp_path):
    from bgedit_cli.training.plots import PALETTE, run_series

    a, b = write_log(tmp_path / "a"), write_log(tmp_path / "b", scale=0.5)
    series = run_series([a, b], labels=["batch 4"])
    assert [s.name for s in series] == ["batch 4", "b"] and series[1].points[0] == (5.0, pytest.approx(0.5 * (75 - 50 / 7)))
    out = tmp_path / "both.png"
    res = cli(["runs", "plot", a, b, "--label", "batch 4", "--label", "batch 8", "--x", "step", "--out", out])
    assert res.exit_code == 0, (res.stderr, res.exception)
    assert colour_pixels(out, PALETTE[2]) == 0 and colour_pixels(out, PALETTE[1]) > 100


def test_plot_errors(cli, tmp_path):
    run = write_log(tmp_path / "run")
    out = tmp_path / "x.png"
    assert_clean_error(cli(["runs", "plot", tmp_path / "nowhere", "--out", out]), "no run log")
    assert_clean_error(cli(["runs", "plot", run, "--metric", "val/miou", "--out", out]), "no records with val/miou")
    assert_clean_error(cli(["runs", "plot", run, "--x", "epoch", "--out", out]), "no 'epoch'")
    res = cli(["runs", "plot", run, "--mark", "soon=budget", "--out", out])
    assert res.exit_code == 2 and "--mark" in res.stderr
    assert not out.exists()


@pytest.mark.parametrize("span", [0.3, 7.0, 1234.0])
def test_nice_step(span):
    from bgedit_cli.training.plots import nice_step

    step = nice_step(span)
    mantissa = step / 10 ** np.floor(np.log10(step))
    assert round(mantissa, 6) in (1, 2, 2.5, 5, 10) and 3 <= span / step <= 6
