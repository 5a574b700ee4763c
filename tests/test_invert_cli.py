"""`bgedit invert`, `mix-style`, `mix-content` in-process on a tiny random bundle, including error paths."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from bgedit_cli.checkpoint import save_network
from bgedit_cli.io import load_seg
from bgedit_cli.latent import load_latent, save_latent
from bgedit_cli.nn.inversion import build_inversion
from bgedit_cli.nn.segmenter import PRESETS as SEGMENTER_PRESETS
from bgedit_cli.nn.segmenter import Segmenter
from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator
from conftest import assert_clean_error


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.int16)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A tiny random bundle (generator, both inversion variants, segmenter) plus inputs."""
    root = tmp_path_factory.mktemp("bundle")
    torch.manual_seed(0)
    g = Generator(GENERATOR_PRESETS["tiny"])
    sha = save_network(root / "model" / "generator.safetensors", g, kind="generator")
    save_network(root / "model" / "inversion.safetensors", build_inversion("proposed", "tiny", g, sha),
                 kind="inversion")
    save_network(root / "model" / "inversion-baseline.safetensors", build_inversion("baseline", "tiny", g, sha),
                 kind="inversion")
    save_network(root / "model" / "segmenter.safetensors", Segmenter(SEGMENTER_PRESETS["tiny"]), kind="segmenter")
    # A second generator of the same shapes: its latents and inversion files must be refused.
    other = Generator(GENERATOR_PRESETS["tiny"])
    save_network(root / "other" / "generator.safetensors", other, kind="generator")
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / f"img{i}.png")
        Image.fromarray(rng.integers(0, 151, (16, 16), dtype=np.uint8)).save(root / f"seg{i}.png")
    (root / "broken.png").write_bytes(b"not an image")
    return root


def test_invert_writes_images_and_latents(cli, bundle, tmp_path):
    b = bundle
    res = cli(["invert", b / "img0.png", b / "img1.png", "--seg", b / "seg0.png", "--seg", b / "seg1.png",
               "--model", b / "model", "--out", tmp_path, "--steps", "2", "--batch-size", "2", "--json"])
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["failed"] == [] and [o["input"] for o in report["outputs"]] == [str(b / "img0.png"),
                                                                                 str(b / "img1.png")]
    for i in range(2):
        assert _pixels(tmp_path / f"img{i}.png").shape == (16, 16, 3)
        inv = load_latent(tmp_path / f"img{i}.latent.safetensors", report["generator_sha256"])
        assert inv.ws.shape == (1, 6, 32) and inv.seg_latents.shape == (1, 4, 32)
        assert inv.meta["source"] == f"img{i}.png" and inv.meta["steps"] == 2
    # One at a time gives the same pixels as the batch (up to rounding).
    res = cli(["invert", b / "img1.png", "--seg", b / "seg1.png", "--model", b / "model", "--out", tmp_path / "one",
               "--steps", "2", "--quiet"])
    assert res.exit_code == 0 and res.stderr == ""
    assert np.abs(_pixels(tmp_path / "one" / "img1.png") - _pixels(tmp_path / "img1.png")).max() <= 1
    # Existing outputs are kept without --force.
    res = cli(["invert", b / "img0.png", "--seg", b / "seg0.png", "--model", b / "model", "--out", tmp_path])
    assert_clean_error(res, "already exists", "--force")


def test_invert_save_seg_only_when_asked(cli, bundle, tmp_path):
    b = bundle
    args = ["invert", b / "img0.png", "--seg", b / "seg0.png", "--model", b / "model", "--steps", "1", "--quiet"]
    res = cli(args + ["--out", tmp_path / "plain"])
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "plain" / "img0.png").is_file() and not list((tmp_path / "plain").glob("*.seg.png"))
    res = cli(args + ["--out", tmp_path / "with", "--save-seg"])
    assert res.exit_code == 0, res.stderr
    assert [p.name for p in (tmp_path / "with").glob("*.seg.png")] == ["img0.seg.png"]
    assert np.array_equal(load_seg(tmp_path / "with" / "img0.seg.png"), load_seg(b / "seg0.png", 16))


def test_invert_predicts_seg_and_survives_a_bad_file(cli, bundle, tmp_path):
    b = bundle
    res = cli(["invert", b / "img0.png", b / "broken.png", b / "img1.png", "--model", b / "model", "--out", tmp_path,
               "--steps", "1", "--save-seg"])
    assert_clean_error(res, "broken.png", "not a readable image")
    for i in range(2):
        assert (tmp_path / f"img{i}.latent.safetensors").is_file()
        seg = np.asarray(Image.open(tmp_path / f"img{i}.seg.png"))
        assert seg.shape == (16, 16) and seg.max() <= 150
    assert not (tmp_path / "broken.png").exists() and not list(tmp_path.glob(".*tmp"))


def test_invert_files_streams_its_inputs(bundle, tmp_path):
    """The function behind `bgedit invert` takes any iterable of inputs and reports per item."""
    from bgedit_cli.pipelines.batch import Source
    from bgedit_cli.pipelines.invert import invert_files
    from bgedit_cli.pipelines.models import load_models

    b = bundle
    models = load_models(b / "model", None, "cpu")
    seen = []

    def sources():
        for name in ("img0", "broken", "img1"):
            seen.append(sorted(p.name for p in tmp_path.glob("*.png")))  # what was written before this item
            yield Source(b / f"{name}.png", b / "seg0.png")

    report = invert_files(models, sources(), tmp_path, steps=1, batch_size=1)
    assert [d["input"] for d in report.done] == [str(b / "img0.png"), str(b / "img1.png")]
    assert [f.input for f in report.failed] == [str(b / "broken.png")] and "not a readable image" in \
        report.failed[0].error
    assert seen == [[], ["img0.png"], ["img0.png"]]  # outputs are written as each batch is done


def test_invert_paths_is_the_command_in_one_call(bundle, tmp_path):
    """`bgedit invert`'s one call: inputs (arguments with their maps, then a list), models, progress, failures."""
    from bgedit_cli.distributed import Dist
    from bgedit_cli.errors import InputError
    from bgedit_cli.pipelines.invert import invert_paths

    b = bundle
    stages, failures = [], []
    run = invert_paths([b / "img0.png", b / "broken.png", b / "img1.png"], tmp_path / "a", seg=[b / "seg0.png"],
                       model=b / "model", device="cpu", steps=1, batch_size=1, save_seg=True,
                       progress=lambda *p: stages.append(p), on_failure=failures.append)
    assert run.shard == Dist() and run.variant == "proposed" and len(run.generator_sha256) == 64
    assert [d["input"] for d in run.report.done] == [str(b / "img0.png"), str(b / "img1.png")]
    assert [f.input for f in failures] == [str(b / "broken.png")] and failures == run.report.failed
    assert stages == [("inverting", k, 3) for k in range(4)]  # at once, then after each batch
    assert np.array_equal(load_seg(tmp_path / "a" / "img0.seg.png"), load_seg(b / "seg0.png", 16))  # its own map

    listed = tmp_path / "list.txt"
    listed.write_text(f"{b / 'img1.png'}\n")
    stages.clear()
    run = invert_paths([b / "img0.png"], tmp_path / "b", files_from=listed, model=b / "model", variant="baseline",
                       device="cpu", steps=1, progress=lambda *p: stages.append(p))
    assert run.variant == "baseline" and [d["input"] for d in run.report.done] == [str(b / "img0.png"),
                                                                                   str(b / "img1.png")]
    assert stages[0] == ("inverting", 0, None) and stages[-1] == ("inverting", 2, None)  # a list: no total
    with pytest.raises(InputError, match="--files-from .*no such file"):
        invert_paths(None, tmp_path / "c", files_from=tmp_path / "nowhere.txt", model=b / "model", device="cpu")


def test_invert_usage_errors(cli, bundle, tmp_path):
    b = bundle
    res = cli(["invert", b / "img0.png", "--seg", b / "seg0.png", "--seg", b / "seg1.png", "--model", b / "model",
               "--out", tmp_path])
    assert res.exit_code == 2 and "one per image" in res.stderr
    res = cli(["invert", b / "img0.png", "--model", tmp_path / "nowhere", "--out", tmp_path])
    assert_clean_error(res, "no generator network", "bgedit train generator")
    res = cli(["invert", b / "img0.png", "--model", b / "model", "--generator", b / "other" / "generator.safetensors",
               "--out", tmp_path])
    assert_clean_error(res, "trained for generator", "matching generator")
    res = cli(["invert", b / "img0.png", "--model", b / "model", "--variant", "best", "--out", tmp_path])
    assert_clean_error(res, "--variant best")
    res = cli(["invert", b / "img0.png", "--model", b / "model", "--out", b / "img1.png"])
    assert_clean_error(res, "is a file")
    assert not list(tmp_path.iterdir())


def test_mix_style_and_content(cli, bundle, tmp_path):
    b, m = bundle, bundle / "model"
    res = cli(["invert", b / "img0.png", b / "img1.png", "--seg", b / "seg0.png", "--seg", b / "seg1.png",
               "--model", m, "--out", tmp_path / "inv", "--steps", "2", "--quiet"])
    assert res.exit_code == 0, res.stderr
    la, lb = tmp_path / "inv" / "img0.latent.safetensors", tmp_path / "inv" / "img1.latent.safetensors"
    recon_a = _pixels(tmp_path / "inv" / "img0.png")
    # A mixed with itself is A's reconstruction (fp16 deltas: up to one grey level).
    res = cli(["mix-style", la, la, "--model", m, "--out", tmp_path / "aa.png", "--json"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["layers"] == [4, 5]
    assert np.abs(_pixels(tmp_path / "aa.png") - recon_a).max() <= 1
    res = cli(["mix-content", la, la, "--model", m, "--out", tmp_path / "cc.png", "--quiet"])
    assert res.exit_code == 0 and np.abs(_pixels(tmp_path / "cc.png") - recon_a).max() <= 1
    # Real mixes: latents, images (inverted on the fly), options, a mixed latent to chain on.
    res = cli(["mix-style", la, b / "img1.png", "--style-seg", b / "seg1.png", "--layers", "3:", "--delta-img", "b",
               "--model", m, "--out", tmp_path / "ab.png", "--steps", "2", "--save-latent"])
    assert res.exit_code == 0, res.stderr
    assert _pixels(tmp_path / "ab.png").shape == (16, 16, 3) and (tmp_path / "ab.latent.safetensors").is_file()
    res = cli(["mix-content", la, lb, "--swap-deltas", "all", "--model", m, "--out", tmp_path / "c.png", "--quiet"])
    assert res.exit_code == 0 and np.abs(_pixels(tmp_path / "c.png") - recon_a).max() > 1
    res = cli(["mix-content", la, "--seg", b / "seg1.png", "--model", m, "--out", tmp_path / "layout.png", "--json"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["mode"] == "layout" and (tmp_path / "layout.png").is_file()


def test_mix_errors(cli, bundle, tmp_path):
    b, m = bundle, bundle / "model"
    res = cli(["invert", b / "img0.png", "--model", m, "--variant", "baseline", "--out", tmp_path, "--steps", "1"])
    assert res.exit_code == 0, res.stderr
    base = tmp_path / "img0.latent.safetensors"
    res = cli(["mix-style", base, base, "--model", m, "--out", tmp_path / "x.png"])
    assert_clean_error(res, "proposed variant")
    res = cli(["mix-style", b / "img0.png", b / "img1.png", "--model", m, "--inversion",
               m / "inversion-baseline.safetensors", "--out", tmp_path / "x.png"])
    assert_clean_error(res, "mixing needs the proposed variant")
    res = cli(["mix-content", base, base, "--model", m, "--out", tmp_path / "x.png"])
    assert_clean_error(res, "proposed variant")
    # A latent made with another generator is refused.
    res = cli(["invert", b / "img1.png", "--seg", b / "seg1.png", "--model", m, "--out", tmp_path / "p", "--quiet"])
    good = tmp_path / "p" / "img1.latent.safetensors"
    foreign = tmp_path / "foreign.latent.safetensors"
    save_latent(foreign, load_latent(good), {"generator_sha256": "cd" * 32})
    res = cli(["mix-style", good, foreign, "--model", m, "--out", tmp_path / "x.png"])
    assert_clean_error(res, "foreign.latent.safetensors", "made with generator cdcd", "bgedit invert")
    res = cli(["mix-style", good, tmp_path / "missing.latent.safetensors", "--model", m, "--out", tmp_path / "x.png"])
    assert_clean_error(res, "missing.latent.safetensors", "no such file")
    res = cli(["mix-content", b / "img0.png", "--model", m, "--out", tmp_path / "x.png"])
    assert res.exit_code == 2 and "--seg" in res.stderr
    res = cli(["mix-style", b / "broken.png", b / "img1.png", "--model", m, "--out", tmp_path / "x.png"])
    assert_clean_error(res, "broken.png")
    res = cli(["mix-style", b / "img0.png", b / "img1.png", "--layers", "9:", "--model", m,
               "--out", tmp_path / "x.png"])
    assert_clean_error(res, "--layers")
    assert not (tmp_path / "x.png").exists()
