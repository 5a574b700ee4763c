"""`bgedit bundle export SRC DST`: a bundle's networks in fp16 where their output agrees with fp32, re-linked to
each other's exported hashes, usable as a bundle; nothing overwritten without --force."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from bgedit_cli.checkpoint import file_sha256, read_checkpoint, read_header, save_network
from conftest import assert_clean_error

NAMES = ("generator", "segmenter", "clip", "inversion", "text")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """generator, segmenter, CLIP, proposed inversion and a text model, tiny and random, linked by hash."""
    from bgedit_cli.nn.clip_model import ClipModel, clip_config
    from bgedit_cli.nn.inversion import build_inversion
    from bgedit_cli.nn.segmenter import Segmenter, segmenter_preset
    from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator
    from bgedit_cli.nn.text_encoder import build_text_editor

    root = tmp_path_factory.mktemp("export") / "trained"
    torch.manual_seed(0)
    g = Generator(GENERATOR_PRESETS["tiny"])
    g.update_w_avg(500)
    g_sha = save_network(root / "generator.safetensors", g, kind="generator")
    save_network(root / "segmenter.safetensors", Segmenter(segmenter_preset("tiny")), kind="segmenter")
    clip = ClipModel(clip_config("tiny", image_resolution=16))
    clip_sha = save_network(root / "clip.safetensors", clip, kind="clip")
    save_network(root / "inversion.safetensors", build_inversion("proposed", "tiny", g, g_sha), kind="inversion")
    text_dim = int(clip.text_projection.shape[1])
    editor = build_text_editor(g.cfg, text_dim, "tiny", prompts=("snow", "night"), generator_sha256=g_sha,
                               clip_sha256=clip_sha)
    editor.set_prompts(torch.randn(2, text_dim))
    save_network(root / "text.safetensors", editor, kind="text")
    (root / "runs" / "text-20260101-000000").mkdir(parents=True)  # never exported
    return root


def export(cli, src: Path, dst: Path, *extra):
    return cli(["bundle", "export", src, dst, "--json", *extra])


def test_export_writes_fp16_where_it_agrees_and_relinks(cli, bundle, tmp_path):
    from bgedit_cli.pipelines import bundle_export

    out = tmp_path / "demo"
    res = export(cli, bundle, out)
    assert res.exit_code == 0, (res.stderr, res.exception)
    report = json.loads(res.stdout)
    assert sorted(report["files"]) == sorted(NAMES)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.safetensors" for n in NAMES)  # no runs/
    thresholds = {"psnr_db": bundle_export.MIN_PSNR, "pixel_agreement": bundle_export.MIN_AGREEMENT,
                  "min_cosine": bundle_export.MIN_COSINE}
    for name, row in report["files"].items():
        measure = next(k for k in row if k in thresholds)
        agrees = row[measure] >= thresholds[measure]
        assert row["dtype"] == ("float16" if agrees else "float32"), (name, row)
        _, entries = read_header(out / f"{name}.safetensors", name)
        assert {dtype for dtype, _ in entries.values()} & {"F16", "F32"} == {"F16" if agrees else "F32"}, name
    assert report["files"]["generator"]["dtype"] == "float16"  # a tiny random generator survives fp16
    assert report["total_mb"] == pytest.approx(sum(r["mb"] for r in report["files"].values()), abs=0.02)

    # Hash links point at the exported files; the trained ones are kept in the provenance.
    g_new, clip_new = file_sha256(out / "generator.safetensors"), file_sha256(out / "clip.safetensors")
    assert g_new != file_sha256(bundle / "generator.safetensors")
    inv = read_checkpoint(out / "inversion.safetensors", "inversion")
    assert inv.config["generator_sha256"] == g_new
    assert inv.provenance["export"]["relinked"]["generator_sha256"]["trained_with"] == \
        file_sha256(bundle / "generator.safetensors")
    text = read_checkpoint(out / "text.safetensors", "text")
    assert (text.config["generator_sha256"], text.config["clip_sha256"]) == (g_new, clip_new)
    assert report["files"]["text"]["relinked"] == ["clip_sha256", "generator_sha256"]
    assert text.provenance["export"]["source_sha256"] == file_sha256(bundle / "text.safetensors")

    # The export is a working bundle: the text model loads against its generator and CLIP, inversion runs.
    from bgedit_cli.pipelines.models import load_models, load_text_model

    models = load_models(out, None, "cpu")
    assert load_text_model(models).editor.cfg.prompts == ("snow", "night")
    img = tmp_path / "x.png"
    torch.manual_seed(1)
    from bgedit_cli.io import save_png, to_uint8

    save_png(img, to_uint8(torch.rand(1, 3, 16, 16) * 2 - 1)[0])
    res = cli(["invert", img, "--model", out, "--out", tmp_path / "inv", "--steps", "1", "--device", "cpu",
               "--quiet"])
    assert res.exit_code == 0, res.stderr


def test_export_keeps_fp32_where_fp16_disagrees(cli, bundle, tmp_path, monkeypatch):
    from bgedit_cli.pipelines import bundle_export

    monkeypatch.setattr(bundle_export, "MIN_PSNR", math.inf)  # no PSNR is high enough: generator, inversion
    res = export(cli, bundle, tmp_path / "out")
    assert res.exit_code == 0, res.stderr
    files = json.loads(res.stdout)["files"]
    assert files["generator"]["dtype"] == files["inversion"]["dtype"] == "float32"
    src = read_checkpoint(bundle / "generator.safetensors", "generator").tensors
    out = read_checkpoint(tmp_path / "out" / "generator.safetensors", "generator").tensors
    assert all(torch.equal(src[k], out[k]) for k in src)  # fp32 is a plain copy of the tensors


def test_export_errors(cli, bundle, tmp_path):
    out = tmp_path / "out"
    assert export(cli, bundle, out).exit_code == 0
    before = file_sha256(out / "text.safetensors")
    assert_clean_error(cli(["bundle", "export", bundle, out]), "already exists", "--force")
    assert file_sha256(out / "text.safetensors") == before
    assert export(cli, bundle, out, "--force").exit_code == 0
    assert_clean_error(cli(["bundle", "export", bundle, bundle]), "is the source bundle")
    assert_clean_error(cli(["bundle", "export", tmp_path / "nowhere", tmp_path / "o2"]), "no such bundle folder")
    no_gen = tmp_path / "no-gen"
    no_gen.mkdir()
    (no_gen / "inversion.safetensors").write_bytes((bundle / "inversion.safetensors").read_bytes())
    assert_clean_error(cli(["bundle", "export", no_gen, tmp_path / "o3"]), "generator.safetensors: missing")
    assert not (tmp_path / "o3").exists()
