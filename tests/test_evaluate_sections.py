"""The section registry of `bgedit evaluate` (pipelines/evaluation/registry.py): a section defined here, in one
module, and registered with one line appears in the JSON, the terminal tables and the HTML report; a section
whose precondition fails is skipped with its reason; the loop keeps the registration order, figures last."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bgedit_cli.pipelines.evaluation import SECTIONS, Section, SectionResult, Table, register
from bgedit_cli.pipelines.evaluation.context import Context
from conftest import assert_clean_error


# ----------------------------------------------------------------------------------------------------------
# An example section: the mean brightness of every image set, in the JSON and in its own table.


@dataclasses.dataclass
class BrightnessResult(SectionResult):
    reference: float  # mean of the reference set's pixels, 0..255
    rows: dict[str, float]  # Table 1 row -> mean of its set's pixels

    def to_json(self) -> dict:
        return {"reference": self.reference, "rows": self.rows}

    def tables(self) -> list[Table]:
        return [Table("Mean brightness (0..255)", ["set", "mean"],
                      [["reference", f"{self.reference:.1f}"]] + [[r, f"{v:.1f}"] for r, v in self.rows.items()])]


class BrightnessSection(Section):
    name = "brightness"
    label = "brightness"
    modes = ("bundle", "folders")

    def requires(self, ctx: Context) -> str | None:
        return None if ctx.real is not None else "no images"

    def run(self, ctx: Context) -> BrightnessResult:
        per_image = ctx.gather({"reference": ctx.real.double().mean((1, 2, 3)),
                                **{row: x.double().mean((1, 2, 3)) for row, x in ctx.fake.items()}})
        means = {k: float(v.mean()) for k, v in per_image.items()}
        return BrightnessResult(means.pop("reference"), means)


class NeverSection(Section):
    name = "never"
    label = "never scored"
    modes = ("folders",)

    def requires(self, ctx: Context) -> str | None:
        return "this data has no never-ground-truth"

    def run(self, ctx: Context) -> SectionResult:
        raise AssertionError("a skipped section must not run")


@pytest.fixture
def sections():
    """Registers the example sections for one test (one line each), then removes them."""
    before = dict(SECTIONS)
    register(BrightnessSection())
    register(NeverSection())
    yield
    SECTIONS.clear()
    SECTIONS.update(before)


@pytest.fixture
def folders(tmp_path) -> dict[str, Path]:
    """Two folders of three 16 px images: real grey 100, fake grey 160 (same names)."""
    out = {}
    for side, level in (("real", 100), ("fake", 160)):
        (tmp_path / side).mkdir()
        for i in range(3):
            Image.fromarray(np.full((16, 16, 3), level, np.uint8)).save(tmp_path / side / f"{i}.png")
        out[side] = tmp_path / side
    return out


def evaluate(cli, folders, *args):
    return cli(["evaluate", "--real", folders["real"], "--fake", folders["fake"], "--paired", "--metrics", "l2,swd",
                "--device", "cpu", "--quiet", *args])


def test_a_registered_section_appears_in_the_json_tables_and_report(cli, folders, sections, tmp_path):
    result = evaluate(cli, folders, "--json", "--report", tmp_path / "report")
    assert result.exit_code == 0, (result.output, result.exception)
    out = json.loads(result.stdout)
    assert out["brightness"] == {"reference": pytest.approx(100.0), "rows": {"fake vs real": pytest.approx(160.0)}}
    assert out["never"] == {"skipped": "this data has no never-ground-truth"}
    assert out["metrics"]["fake vs real"]["l2"]["value"] == pytest.approx((60 / 127.5) ** 2)  # the others still run
    assert "brightness" in out["seconds"] and "never" not in out["seconds"]
    page = (tmp_path / "report" / "index.html").read_text()
    assert "<caption>Mean brightness (0..255)</caption>" in page and "<td>160.0</td>" in page
    assert "never scored: skipped: this data has no never-ground-truth" in page
    assert page.index("Mean brightness") > page.index("<h2>Figures</h2>")  # section tables under "More tables"

    text = evaluate(cli, folders)
    assert text.exit_code == 0, (text.output, text.exception)
    assert "Mean brightness (0..255)" in text.stdout and "160.0" in text.stdout
    assert "Note: never scored: skipped: this data has no never-ground-truth" in text.stdout


def test_the_loop_keeps_registration_order_with_figures_last(folders, sections):
    from bgedit_cli.pipelines.evaluation import EvalOptions, evaluate_folders

    ev = evaluate_folders(EvalOptions(real=folders["real"], fake=folders["fake"], paired=True, metrics=("l2",),
                                      device="cpu", figures=True))
    assert list(ev.results) == ["pairwise", "distribution", "brightness", "never", "figures"]
    assert list(SECTIONS)[-3:] == ["figures", "brightness", "never"]  # registered after figures, run before
    assert ev.results["distribution"].reason == "no distribution metric asked"
    assert isinstance(ev.results["brightness"], BrightnessResult) and ev.results["brightness"].reference == 100
    assert list(ev.figures) == ["pairs"] and torch.allclose(ev.figures["pairs"].columns[0], torch.full(
        (3, 3, 16, 16), 100 / 127.5 - 1))


def test_a_section_name_is_registered_once(sections):
    with pytest.raises(ValueError, match="brightness"):
        register(BrightnessSection())
    with pytest.raises(ValueError, match="new name"):
        register(Section())


def test_built_in_sections_are_registered_in_order():
    assert list(SECTIONS)[:7] == ["reconstruction", "pairwise", "distribution", "mixing", "layout", "text",
                                  "figures"]


def test_without_the_example_the_json_has_no_key_for_it(cli, folders):
    result = evaluate(cli, folders, "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "brightness" not in json.loads(result.stdout)
    assert_clean_error(evaluate(cli, folders, "--metrics", "l2,nope"), "nope", "choose from")
