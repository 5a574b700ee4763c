"""Synthetic scenes: the renderer's contracts and `bgedit data synth` (tiny resolutions, few scenes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bgedit_cli.data import synth
from conftest import assert_clean_error

R = 48


def _scene(i: int) -> tuple[dict, dict]:
    return synth.sample_content(np.random.default_rng([7, i])), synth.sample_style(np.random.default_rng([8, i]))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_render_is_a_pure_function():
    content, style = _scene(0)
    rgb, seg = synth.render(content, style, R)
    assert rgb.shape == (R, R, 3) and rgb.dtype == np.uint8 and seg.shape == (R, R) and seg.dtype == np.uint8
    rgb2, seg2 = synth.render(json.loads(json.dumps(content)), json.loads(json.dumps(style)), R)  # via metadata
    assert np.array_equal(rgb, rgb2) and np.array_equal(seg, seg2)


def test_style_never_changes_the_annotation():
    for i in range(4):
        content, style = _scene(i)
        styles = [synth.canonical_style(n) for n in synth.STYLE_NAMES] + [style, _scene(i + 10)[1]]
        renders = [synth.render(content, s, R) for s in styles]
        for rgb, seg in renders[1:]:
            assert np.array_equal(seg, renders[0][1])
        # ...while the looks do differ.
        assert len({rgb.tobytes() for rgb, _ in renders}) == len(renders)


def test_content_changes_the_annotation():
    segs = [synth.layout(_scene(i)[0], R).seg for i in range(6)]
    assert len({s.tobytes() for s in segs}) == 6
    content = _scene(0)[0]
    moved = dict(content, horizon=round(content["horizon"] + 0.1, 3))
    assert not np.array_equal(synth.layout(content, R).seg, synth.layout(moved, R).seg)


def test_scenes_use_many_ade20k_classes():
    seen = set()
    for i in range(40):
        seen |= set(np.unique(synth.layout(_scene(i)[0], 32).seg).tolist())
    assert seen <= set(synth.CLASS_IDS.values())
    assert len(seen) >= 8, sorted(seen)


def test_captions_name_content_and_style():
    content, _ = _scene(3)
    captions = {n: synth.caption(content, synth.canonical_style(n)) for n in synth.STYLE_NAMES}
    assert "at night" in captions["night"] and "snowy" in captions["snow"] and "at sunset" in captions["sunset"]
    assert len(set(captions.values())) == len(captions)


def _synth(cli, out: Path, *extra) -> None:
    res = cli(["data", "synth", "--out", out, "--num", 10, "--resolution", 32, "--seed", 3, "--val-fraction", 0.3,
               "--mixing-pairs", 2, "--quiet", *extra], catch_exceptions=False)
    assert res.exit_code == 0, res.stderr


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from typer.testing import CliRunner

    from bgedit_cli.cli.app import app

    out = tmp_path_factory.mktemp("synth") / "a"
    runner = CliRunner()
    res = runner.invoke(app, ["data", "synth", "--out", str(out), "--num", "10", "--resolution", "32", "--seed", "3",
                              "--val-fraction", "0.3", "--mixing-pairs", "2", "--workers", "2", "--quiet"],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    return out


def test_same_seed_same_bytes_whatever_the_workers(cli, dataset, tmp_path):
    _synth(cli, tmp_path / "b", "--workers", "1")
    a, b = _files(dataset), _files(tmp_path / "b")
    assert len(a) == 10 * 2 + 2 * 2 + 2 * len(synth.STYLE_NAMES) + 2  # + metadata.jsonl, vocabulary.json
    assert a.keys() == b.keys()
    for name in a:
        assert a[name] == b[name], name
    # Another seed gives other scenes.
    other = cli(["data", "synth", "--out", tmp_path / "d", "--num", 10, "--resolution", 32, "--seed", 4, "--quiet"])
    assert other.exit_code == 0
    assert _files(tmp_path / "d")["images/training/synth_00000000.png"] != a["images/training/synth_00000000.png"]


def test_layout_and_metadata(dataset):
    lines = (dataset / "metadata.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["file"] for r in records] == [f"synth_{i:08d}" for i in range(10)]
    assert sum(r["split"] == "validation" for r in records) == 3
    for r in records:
        assert {"file", "split", "caption", "content", "style"} <= r.keys()
        assert r["style"]["name"] in synth.STYLE_NAMES and r["caption"]
        img = Image.open(dataset / "images" / r["split"] / f"{r['file']}.png")
        seg = Image.open(dataset / "annotations" / r["split"] / f"{r['file']}.png")
        assert img.mode == "RGB" and img.size == (32, 32) and seg.mode == "L" and seg.size == (32, 32)
        # The metadata reproduces the files.
        rgb, ann = synth.render(r["content"], r["style"], 32)
        assert np.array_equal(np.asarray(img), rgb) and np.array_equal(np.asarray(seg), ann)


def test_mixing_ground_truth(dataset):
    records = [json.loads(line) for line in (dataset / "metadata.jsonl").read_text().splitlines()]
    val = [r for r in records if r["split"] == "validation"][:2]
    for a in val:
        img_a = (dataset / "images" / "validation" / f"{a['file']}.png").read_bytes()
        assert (dataset / "mixing" / "validation" / f"{a['file']}__{a['file']}.png").read_bytes() == img_a
        for b in val:
            mixed = np.asarray(Image.open(dataset / "mixing" / "validation" / f"{a['file']}__{b['file']}.png"))
            assert np.array_equal(mixed, synth.render(a["content"], b["style"], 32)[0])
        for name in synth.STYLE_NAMES:
            edited = np.asarray(Image.open(dataset / "textedit" / "validation" / f"{a['file']}__{name}.png"))
            assert np.array_equal(edited, synth.render(a["content"], synth.canonical_style(name), 32)[0])


def test_existing_output_needs_force(cli, dataset, tmp_path):
    res = cli(["data", "synth", "--out", dataset, "--num", 2, "--resolution", 32])
    assert_clean_error(res, "--force")
    out = tmp_path / "e"
    _synth(cli, out)
    stale = out / "images" / "training" / "synth_00000099.png"
    stale.write_bytes(b"old")
    _synth(cli, out, "--force")
    assert not stale.exists() and (out / "metadata.jsonl").is_file()


def test_bad_values_are_clean_errors(tmp_path):
    from bgedit_cli.errors import InputError

    with pytest.raises(InputError, match="val-fraction"):
        synth.synthesize(tmp_path / "x", num=2, resolution=32, val_fraction=1.5)
    with pytest.raises(InputError, match="unknown style"):
        synth.canonical_style("rainbow")


@pytest.mark.parametrize("shape", [(5, 7), (9, 4, 3), (32, 32, 3)])
def test_png_encoder_round_trips(shape, tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    path = tmp_path / "x.png"
    path.write_bytes(synth.encode_png(pixels))
    with Image.open(path) as im:
        assert im.mode == ("RGB" if len(shape) == 3 else "L")
        assert np.array_equal(np.asarray(im), pixels)


def test_validation_split_sizes():
    assert synth.validation_indices(10, 0.3) == [1, 5, 8]
    assert len(synth.validation_indices(10, 0.99)) == 9  # below 1, one training scene is kept
    assert synth.validation_indices(24, 1.0) == list(range(24))  # a held-out set: no training scene
    assert synth.validation_indices(1, 1.0) == [0] and synth.validation_indices(1, 0.5) == []
    assert synth.validation_indices(10, 0.0) == []


def test_exported_names_do_not_shadow_the_modules():
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(synth.__path__):  # `import bgedit_cli.data.synth.<stage> as m` is the module
        assert getattr(synth, info.name) is importlib.import_module(f"bgedit_cli.data.synth.{info.name}"), info.name
