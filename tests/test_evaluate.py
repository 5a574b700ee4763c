"""`bgedit evaluate` end to end at tiny size: a bundle on synthetic data (reconstruction, distribution metrics,
mixing, text edits against ground truth), two folders of images (paired and not), the HTML report, the errors.
No pretrained weights exist here: LPIPS, FID and KID must come back unavailable with their reasons, and FID/KID
become numbers with a random Inception file in the publisher's format written by the test."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import test_metrics_distribution
import test_text_edit
from bgedit_cli.data.synth import synthesize
from conftest import assert_clean_error

# Fixtures shared with those modules: a random Inception-v3 in torch-fidelity's file format, and a tiny bundle.
inception_file = test_metrics_distribution.inception_file
base_bundle = test_text_edit.base_bundle
INCEPTION_FILE = test_metrics_distribution.INCEPTION_FILE
PROMPTS = ("snow", "night", "a lake")  # two synth style names and one that is not


@pytest.fixture(autouse=True)
def no_weights(tmp_path, monkeypatch):
    """An empty $BGEDIT_HOME and torch hub cache: no Inception, AlexNet or OpenAI CLIP anywhere."""
    monkeypatch.setenv("BGEDIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch" / "hub"))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """24 scenes of 16 px; the 2 validation scenes have mixing and text-edit ground truth."""
    out = tmp_path_factory.mktemp("synth16")
    synthesize(out, num=24, resolution=16, seed=0, mixing_pairs=3, workers=1, force=True)
    return out


@pytest.fixture(scope="module")
def bundle(base_bundle, tmp_path_factory) -> Path:
    """test_text_edit's tiny random bundle (generator, proposed inversion, CLIP, segmenter) plus the baseline
    variant and a text model with a Text Encoder (untrained; its prompts' embeddings stored)."""
    from bgedit_cli.checkpoint import file_sha256, load_network, save_network
    from bgedit_cli.nn.clip_model import load_clip_encoder
    from bgedit_cli.nn.inversion import build_inversion
    from bgedit_cli.nn.text_encoder import build_text_editor

    root = tmp_path_factory.mktemp("bundle")
    for path in base_bundle.glob("*.safetensors"):
        shutil.copy(path, root)
    G = load_network(root / "generator.safetensors", "generator")
    sha = file_sha256(root / "generator.safetensors")
    torch.manual_seed(1)
    save_network(root / "inversion-baseline.safetensors", build_inversion("baseline", "tiny", G, sha), kind="inversion")
    encoder = load_clip_encoder(root / "clip.safetensors")
    editor = build_text_editor(G.cfg, encoder.embed_dim, "tiny", prompts=PROMPTS, clip_name=encoder.name,
                               clip_sha256=encoder.sha256, generator_sha256=sha)
    with torch.no_grad():
        editor.set_prompts(encoder.encode_text(list(PROMPTS)))
    save_network(root / "text.safetensors", editor.eval(), kind="text")
    return root


@pytest.fixture
def small_inception_layer(monkeypatch):
    """FID/KID on Inception's 64-d pool features instead of the 2048-d ones: the same code path, without a
    2048 x 2048 matrix square root (tens of seconds on one core)."""
    from bgedit_cli.metrics import features

    monkeypatch.setattr(features, "INCEPTION_LAYER", "64")


def evaluate(cli, *args):
    return cli(["evaluate", "--device", "cpu", "--quiet", "--steps", "1", *args])


def metric(result: dict, row: str, name: str) -> dict:
    return result["metrics"][row][name]


# ----------------------------------------------------------------------------------------------------------
# Bundle mode.


def test_bundle_json_has_every_value_and_setting(cli, scenes, bundle, tmp_path):
    from bgedit_cli.checkpoint import file_sha256

    result = evaluate(cli, "--data", scenes, "--model", bundle, "--mixing-scenes", "2", "--seed", "3", "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    out = json.loads(result.stdout)
    assert out["rows"] == ["proposed", "baseline"]
    s = out["settings"]
    assert s["num_images"] == 2 and s["resolution"] == 16 and s["steps"] == 1 and s["seed"] == 3
    assert s["kid_subset_size"] == 2 and s["swd"]["seed"] == 3 and "bicubic" in s["resize"]
    assert s["generator_sha256"] == file_sha256(bundle / "generator.safetensors")
    assert s["variants"]["baseline"]["sha256"] == file_sha256(bundle / "inversion-baseline.safetensors")
    assert s["weights"]["clip"]["sha256"] == file_sha256(bundle / "clip.safetensors")
    assert s["weights"]["inception"] is None and s["versions"]["torch"] == torch.__version__
    assert {"torch-fidelity", "lpips", "pytorch-msssim", "bgedit"} <= set(s["versions"])

    # Layout edits (proposed): 2 scenes -> 2 ordered pairs of 16 x 16 pixels, scored against B's map.
    layout = out["layout"]
    assert layout["pairs"] == 2 and layout["edit"]["num_pixels"] == 2 * 16 * 16
    assert all(0 <= layout[k]["miou"] <= 1 for k in ("edit", "b_input", "b_reconstruction", "a_reconstruction"))

    for row in out["rows"]:
        # Pairwise metrics: numbers, the same as the last refinement step's; LPIPS needs >= 32 px.
        final = out["reconstruction"][row]["per_step"][-1]
        assert len(out["reconstruction"][row]["per_step"]) == 2
        for name, value_range in (("l2", "[-1, 1]"), ("psnr", "[0, 1]"), ("ms_ssim", "[0, 1]")):
            m = metric(out, row, name)
            assert m["value"] == pytest.approx(final[name]) and m["settings"]["value_range"] == value_range
        assert metric(out, row, "ms_ssim")["settings"]["computed"] == "ssim"
        lpips = metric(out, row, "lpips")
        assert lpips["value"] is None and "32x32" in lpips["unavailable_reason"]
        # FID/KID: no Inception file anywhere -> no number, and the reason names the file and where it goes.
        for name in ("fid", "kid"):
            m = metric(out, row, name)
            assert m["value"] is None and INCEPTION_FILE in m["unavailable_reason"]
            assert str(tmp_path / "home" / "weights") in m["unavailable_reason"]
        # FD_CLIP on the bundle's CLIP: a number labelled as not comparable; SWD: a number with its settings.
        fd = metric(out, row, "fd_clip")
        assert fd["value"] >= 0 and fd["settings"]["comparable"] is False
        assert "not comparable" in fd["settings"]["note"] and fd["settings"]["weights_sha256"] == s["weights"]["clip"][
            "sha256"]
        swd = metric(out, row, "swd")
        assert swd["value"] > 0 and set(swd["settings"]["levels"]) == {"swd/16"} and swd["settings"]["seed"] == 3

    # Mixing: every variant against the rendered ground truth, next to the trivial answers.
    assert out["mixing"]["proposed"]["pairs"] == 2 and "input_b" in out["mixing"]["proposed"]["style"]
    assert "w+ row swap" in out["mixing"]["baseline"]["style"]
    # Text edits: the two prompts that are style names; with the Text Encoder and the mapper alone.
    text = out["text"]
    assert text["styles"] == ["snow", "night"] and text["scenes"] == 2
    assert len(text["modes"]) == 2 and any("alpha 1" in mode for mode in text["modes"])
    for mode in text["modes"].values():
        assert 0 <= mode["all"]["closer"] <= 1 and 0 <= mode["all"]["clip_rise"] <= 1
        assert mode["all"]["pairs"] == sum(v["pairs"] for v in mode["per_style"].values())
    assert set(out["seconds"]) >= {"inversion+pairwise/proposed", "swd/baseline", "mixing/proposed", "text"}


def test_text_edits_are_scored_against_their_own_ground_truth(scenes, bundle, monkeypatch):
    """With the edit replaced by the unedited reconstruction, the edit is never closer and gains nothing; the
    pairs are (scene, style) with the scene's own style left out, as metadata.jsonl says."""
    from bgedit_cli.pipelines import evaluation as ev
    from bgedit_cli.pipelines.evaluation import text_scores

    monkeypatch.setattr(text_scores, "text_edit", lambda G, inv, *a, **k: inv.images.float())
    out = ev.evaluate_bundle(ev.EvalOptions(data=scenes, model=bundle, metrics=("l2",), steps=1, device="cpu",
                                            variants=("proposed",), mixing_scenes=0)).to_json()
    own = {json.loads(line)["file"]: json.loads(line)["style"]["name"]
           for line in (scenes / "metadata.jsonl").read_text().splitlines()}
    names = sorted({p.name.split("__")[0] for p in (scenes / "textedit" / "validation").glob("*.png")})
    expected = {s: sum(own[n] != s for n in names) for s in ("snow", "night")}
    for mode in out["text"]["modes"].values():
        assert {s: v["pairs"] for s, v in mode["per_style"].items()} == {s: n for s, n in expected.items() if n}
        assert mode["all"]["closer"] == 0 and mode["all"]["clip_gain"] == pytest.approx(0, abs=1e-6)
        assert mode["all"]["l2_edit"] == pytest.approx(mode["all"]["l2_recon"])
        assert mode["all"]["improvement"] == pytest.approx(0, abs=1e-7)
        # The edit is the reconstruction: the segmenter reads the same map; no wording or control does anything.
        assert mode["layout"]["miou"] == pytest.approx(1.0) and mode["layout"]["pairs"] == mode["all"]["pairs"]
        assert mode["unseen"]["all"]["closer"] == 0 and mode["shuffled"]["all"]["closer"] == 0
        assert mode["unseen"]["ratio"] is None and "not positive" in mode["unseen"]["ratio_note"]
    assert out["text"]["same_style_pairs_left_out"] == 2 * len(names) - sum(expected.values())
    assert out["mixing"] == {"skipped": "--mixing-scenes 0 (needs 2 or more)"}


def test_table_has_arrows_and_reasons_for_unavailable_metrics(cli, scenes, bundle):
    result = evaluate(cli, "--data", scenes, "--model", bundle, "--metrics", "l2,lpips,fid,ms_ssim",
                      "--mixing-scenes", "0")
    assert result.exit_code == 0, (result.output, result.exception)
    out = result.stdout
    header = next(line for line in out.splitlines() if "L2 ↓" in line)
    assert "LPIPS ↓" in header and "FID ↓" in header and "MS-SSIM ↑" in header and "KID" not in header
    assert re.search(r"proposed .* n/a¹ .* n/a²", out) and re.search(r"baseline .* n/a¹ .* n/a²", out)
    assert "1. lpips: LPIPS-Alex needs images of at least 32x32 px" in out
    assert f"2. fid: {INCEPTION_FILE} not found" in out
    assert "Text edits vs ground truth" in out and "Note: mixing: skipped" in out


def test_fid_and_kid_are_numbers_with_an_inception_file(cli, scenes, bundle, inception_file, small_inception_layer):
    result = evaluate(cli, "--data", scenes, "--model", bundle, "--variants", "baseline", "--metrics", "fid,kid",
                      "--inception", inception_file, "--mixing-scenes", "0", "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    out = json.loads(result.stdout)
    from bgedit_cli.checkpoint import file_sha256

    fid, kid = metric(out, "baseline", "fid"), metric(out, "baseline", "kid")
    assert fid["value"] > 0 and np.isfinite(fid["value"]) and np.isfinite(kid["value"])
    assert fid["settings"]["weights_sha256"] == file_sha256(inception_file) == out["settings"]["weights"][
        "inception"]["sha256"]
    assert kid["settings"]["subset_size"] == 2 and kid["settings"]["scale"] == 1e3
    assert fid["settings"]["features"] == "inception-v3-compat/64"  # small_inception_layer


def test_variants_missing_skipped_or_refused_and_inversion_file(cli, scenes, bundle, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("generator", "inversion", "segmenter", "clip"):
        shutil.copy(bundle / f"{name}.safetensors", partial)
    result = evaluate(cli, "--data", scenes, "--model", partial, "--metrics", "l2", "--mixing-scenes", "0", "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    out = json.loads(result.stdout)
    assert out["rows"] == ["proposed"] and "baseline" in out["notes"][0] and "not found" in out["notes"][0]
    assert out["text"]["skipped"].startswith("no ") and "text.safetensors" in out["text"]["skipped"]

    asked = evaluate(cli, "--data", scenes, "--model", partial, "--variants", "proposed,baseline")
    assert_clean_error(asked, "inversion-baseline.safetensors", "--variants")

    snapshot = tmp_path / "snap.safetensors"
    shutil.copy(bundle / "inversion-baseline.safetensors", snapshot)
    result = evaluate(cli, "--data", scenes, "--model", partial, "--inversion", snapshot, "--metrics", "l2",
                      "--mixing-scenes", "0", "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    out = json.loads(result.stdout)
    assert out["rows"] == ["baseline"] and out["settings"]["variants"]["baseline"]["file"] == str(snapshot)


# ----------------------------------------------------------------------------------------------------------
# Folder mode.


def _write(folder: Path, images: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, pixels in images.items():
        Image.fromarray(pixels).save(folder / name)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory, scenes) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("folders")
    files = sorted((scenes / "images" / "training").glob("*.png"))[:6]
    real = {p.name: np.asarray(Image.open(p).convert("RGB")) for p in files}
    # Some matches (upsampled to 24 x 32, mirrored), one extra fake, two reals without a match.
    fake = {n.replace(".png", ".jpg" if i == 0 else ".png"): np.asarray(Image.fromarray(a[:, ::-1]).resize((24, 32)))
            for i, (n, a) in enumerate(list(real.items())[:4])}
    fake["extra.png"] = np.zeros((32, 24, 3), np.uint8)
    return {"real": _write(root / "real", real), "same": _write(root / "same", real), "fake": _write(root / "fake", fake)}


def test_identical_folders_give_the_closed_forms(cli, folders, inception_file, small_inception_layer):
    result = evaluate(cli, "--real", folders["real"], "--fake", folders["same"], "--paired", "--inception",
                      inception_file, "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    out = json.loads(result.stdout)
    row = "fake vs real"
    assert out["rows"] == [row] and out["settings"]["num_pairs"] == 6 and out["settings"]["resolution"] == 16
    assert metric(out, row, "l2")["value"] == 0 and metric(out, row, "psnr")["value"] == float("inf")
    assert metric(out, row, "ms_ssim")["value"] == pytest.approx(1.0)
    assert metric(out, row, "swd")["value"] == 0
    assert metric(out, row, "fid")["value"] == pytest.approx(0, abs=1e-3)
    assert metric(out, row, "lpips")["value"] is None  # 16 px, and no AlexNet file
    assert metric(out, row, "fd_clip")["value"] is None and "ViT-B-32.pt" in metric(out, row, "fd_clip")[
        "unavailable_reason"]  # no bundle, no OpenAI CLIP


def test_paired_folders_match_by_name_and_list_the_rest(cli, folders, bundle):
    result = evaluate(cli, "--real", folders["real"], "--fake", folders["fake"], "--paired", "--metrics",
                      "l2,psnr,ms_ssim,swd,fd_clip", "--model", bundle, "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    out = json.loads(result.stdout)
    s = out["settings"]
    assert s["num_pairs"] == 4 and s["num_real"] == 6 and s["num_fake"] == 5
    assert s["resolution"] == 24 and "shorter side" in s["resolution_source"]
    notes = " ".join(out["notes"])
    assert "2 real image(s) without a match" in notes and "1 fake image(s) without a match" in notes
    assert "extra" in notes
    assert metric(out, "fake vs real", "l2")["value"] > 0 and metric(out, "fake vs real", "l2")["settings"]["num"] == 4
    swd = metric(out, "fake vs real", "swd")
    assert swd["value"] > 0 and swd["settings"]["num"] == 5 and "first 5" in swd["settings"]["note"]
    assert metric(out, "fake vs real", "fd_clip")["value"] is not None  # the bundle's CLIP

    again = evaluate(cli, "--real", folders["real"], "--fake", folders["fake"], "--metrics", "swd", "--resolution",
                     "16", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["settings"]["resolution"] == 16


def test_unpaired_folders_refuse_pairwise_metrics(cli, folders):
    result = evaluate(cli, "--real", folders["real"], "--fake", folders["fake"], "--metrics", "l2,fid")
    assert_clean_error(result, "l2", "--paired")


# ----------------------------------------------------------------------------------------------------------
# Report.


def test_report_references_existing_pngs_by_relative_path(cli, scenes, bundle, tmp_path):
    report = tmp_path / "report"
    result = evaluate(cli, "--data", scenes, "--model", bundle, "--metrics", "l2,psnr", "--mixing-scenes", "2",
                      "--report", report)
    assert result.exit_code == 0, (result.output, result.exception)
    page = (report / "index.html").read_text()
    sources = re.findall(r'src="([^"]+)"', page)
    assert sources and all(not s.startswith(("/", "file:")) and (report / s).is_file() for s in sources)
    for figure in ("reconstruction", "style_mixing", "style_mixing_gt", "content_mixing", "layout_edit",
                   "text_edit", "text_edit_mapper_only", "text_edit_gt"):
        assert f"{figure}.png" in sources, figure
    names = sorted(p.stem for p in (scenes / "images" / "validation").glob("*.png"))
    for variant in ("proposed", "baseline"):
        assert sorted(p.stem for p in (report / "recon" / variant).glob("*.png")) == names
    # Reconstruction grid: rows = images, columns = input | baseline y_1 | proposed y_0, y_1.
    assert Image.open(report / "reconstruction.png").size == (4 * 16, 2 * 16)
    assert Image.open(report / "style_mixing.png").size == (3 * 16, 3 * 16)  # header row and column + 2 x 2
    assert "L2 ↓" in page and "PSNR ↑" in page

    again = evaluate(cli, "--data", scenes, "--model", bundle, "--report", report)
    assert_clean_error(again, "--report", "--force")


def test_run_checks_the_report_folder_first_then_evaluates_and_writes_it(folders, tmp_path, monkeypatch):
    from bgedit_cli.errors import OutputExistsError
    from bgedit_cli.pipelines import evaluation

    opts = evaluation.EvalOptions(metrics=("l2", "psnr"), device="cpu", real=folders["real"], fake=folders["fake"],
                                  paired=True)
    plain = evaluation.run(opts)
    assert plain.report is None and "report" not in plain.seconds and plain.device == "cpu" and not plain.figures
    report, stages = tmp_path / "report", []
    ev = evaluation.run(opts, report_dir=report, progress=lambda stage, done, total: stages.append(stage))
    assert ev.report == str(report / "index.html") and (report / "index.html").is_file() and ev.figures
    assert ev.seconds["report"] > 0 and ev.to_json()["report"] == ev.report and stages
    assert ev.to_json()["metrics"] == plain.to_json()["metrics"]

    monkeypatch.setattr(evaluation, "evaluate_folders", lambda *a: pytest.fail("evaluated before the check"))
    with pytest.raises(OutputExistsError, match="--report .* not empty"):
        evaluation.run(opts, report_dir=report)


# ----------------------------------------------------------------------------------------------------------
# Errors.


def test_errors_are_one_line(cli, scenes, bundle, tmp_path):
    assert_clean_error(evaluate(cli, "--data", tmp_path / "missing", "--model", bundle), "--data", "no such folder")
    assert_clean_error(evaluate(cli, "--data", scenes, "--model", bundle, "--metrics", "l2,fidd"), "fidd",
                       "choose from")
    assert_clean_error(evaluate(cli, "--data", scenes, "--model", tmp_path / "nothing"), "nothing",
                       "no such model bundle")
    assert_clean_error(evaluate(cli, "--data", scenes, "--model", bundle, "--variants", "best"), "best")
    assert_clean_error(evaluate(cli), "--data", "--real")
    assert_clean_error(evaluate(cli, "--data", scenes, "--real", scenes), "--data", "--real")
    assert_clean_error(evaluate(cli, "--real", tmp_path, "--fake", scenes), "--real", "no images")


def test_layout_scores_read_the_edit_against_b_s_map(scenes, bundle):
    """A segmenter that returns the map it is given back (via a stub reading the ground truth by image) scores
    1.0 on B's inputs; the edit of A with B's map is scored against B's map, not A's."""
    from bgedit_cli.checkpoint import load_network
    from bgedit_cli.io import load_image, load_seg
    from bgedit_cli.pipelines.evaluation.layout import layout_scores
    from bgedit_cli.pipelines.evaluation.mixing import mixing_pairs

    G = load_network(bundle / "generator.safetensors", "generator")
    net = load_network(bundle / "inversion.safetensors", "inversion")
    root, names, _ = mixing_pairs(scenes)
    names = names[:3]
    images = torch.stack([load_image(root / "images" / "validation" / f"{n}.png", 16) for n in names])
    maps = torch.stack([torch.from_numpy(load_seg(root / "annotations" / "validation" / f"{n}.png", 16)
                                         .astype("int64")) for n in names])

    class Oracle:  # the map of the input image when it is one of the scenes, else class 0 everywhere
        cfg = type("C", (), {"num_classes": 151})

        def predict(self, img):
            out = torch.zeros(img.shape[0], 16, 16, dtype=torch.long)
            for i, x in enumerate(img):
                hit = [k for k in range(len(names)) if torch.allclose(x, images[k], atol=1e-6)]
                if hit:
                    out[i] = maps[hit[0]]
            return out

    scores = layout_scores(G, net, Oracle(), scenes, steps=1, max_scenes=3)
    assert len(names) >= 2 and scores["pairs"] == len(names) * (len(names) - 1)
    assert scores["b_input"]["miou"] == pytest.approx(1.0)
    assert scores["edit"]["miou"] < 1.0  # a random generator's edit is no scene: read as class 0


def test_precision_applies_to_the_bundle_networks_only(cli, scenes, bundle):
    """--precision bf16 runs the bundle's networks under bf16 autocast in every section (recorded, and every
    generator output is bf16, the reconstructions scored too); metrics stay fp32; default fp32. (The tiny
    bundle's PSNR can round alike in both precisions, so a PSNR difference proves nothing.)"""
    from bgedit_cli.nn.stylegan2 import SynthesisNetwork

    args = ("--data", scenes, "--model", bundle, "--variants", "baseline", "--metrics", "l2,psnr", "--json")
    outs, dtypes = {}, {}
    for prec in ("fp32", "bf16"):
        seen = dtypes[prec] = set()
        hook = torch.nn.modules.module.register_module_forward_hook(
            lambda m, _, out, seen=seen: seen.add(out.dtype) if isinstance(m, SynthesisNetwork) else None)
        try:
            result = evaluate(cli, *args, *(("--precision", prec) if prec == "bf16" else ()))
        finally:
            hook.remove()
        assert result.exit_code == 0, (result.output, result.exception)
        outs[prec] = json.loads(result.stdout)
        assert outs[prec]["settings"]["precision"] == prec
    assert dtypes == {"fp32": {torch.float32}, "bf16": {torch.bfloat16}}
    fp32, bf16 = (metric(outs[p], "baseline", "psnr")["value"] for p in ("fp32", "bf16"))
    assert isinstance(bf16, float) and abs(fp32 - bf16) < 2.0
