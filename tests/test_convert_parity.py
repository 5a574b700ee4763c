"""`bgedit convert` + `bgedit generate` reproduce the reference outputs of rosinality and NVIDIA StyleGAN2.

References: ../shared/fixtures/{rosinality,nvidia} (see their READMEs). Tolerances: 1e-4 on float arrays,
one level on PNGs.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

TOL = 1e-4

# (fixture folder, file, input flag, input array, truncation, noise, reference array)
ROSINALITY_CASES = [
    ("--z", "z.npy", 1.0, "const", "out_z.npy"),
    ("--w", "w.npy", 1.0, "const", "out_w.npy"),
    ("--w", "wplus.npy", 1.0, "const", "out_wplus.npy"),
    ("--z", "z.npy", 0.7, "const", "out_z_trunc.npy"),
    ("--w", "w.npy", 1.0, "none", "out_w_nonoise.npy"),
]
NVIDIA_CASES = [
    ("--z", "z.npy", 1.0, "const", "out_z.npy"),
    ("--w", "ws.npy", 1.0, "const", "out_ws.npy"),
    ("--w", "wplus.npy", 1.0, "const", "out_wplus.npy"),
    ("--z", "z.npy", 0.7, "const", "out_z_trunc.npy"),
    ("--z", "z.npy", 1.0, "none", "out_z_nonoise.npy"),
]
SOURCES = {
    "rosinality-g_ema": ("rosinality", "rosinality_g_ema.pt", ROSINALITY_CASES),
    "rosinality-train": ("rosinality", "rosinality_train_ckpt.pt", ROSINALITY_CASES),
    "nvidia": ("nvidia", "network-snapshot-000000.pkl", NVIDIA_CASES),
}


@pytest.fixture(scope="module")
def converted(tmp_path_factory, fixtures_dir):
    """Convert each fixture generator once (in-process CLI)."""
    from typer.testing import CliRunner

    from bgedit_cli.cli.app import app

    out = tmp_path_factory.mktemp("converted")
    paths = {}
    for name, (folder, file, _) in SOURCES.items():
        dst = out / f"{name}.safetensors"
        res = CliRunner().invoke(app, ["convert", str(fixtures_dir / folder / file), str(dst), "--quiet"])
        assert res.exit_code == 0, res.stderr
        paths[name] = dst
    return paths


@pytest.mark.parametrize("source", list(SOURCES))
def test_generate_matches_reference_arrays(source, converted, fixtures_dir, cli, tmp_path):
    folder, _, cases = SOURCES[source]
    ref_dir = fixtures_dir / folder
    for flag, inp, psi, noise, ref in cases:
        out = tmp_path / ref.replace(".npy", "")
        raw = out / "raw.npy"
        res = cli(["generate", converted[source], flag, ref_dir / inp, "--truncation", psi, "--noise", noise,
                   "--raw", raw, "--out", out, "--device", "cpu", "--quiet"])
        assert res.exit_code == 0, res.stderr
        got, want = np.load(raw), np.load(ref_dir / ref)
        assert got.shape == want.shape and got.dtype == np.float32
        diff = float(np.abs(got - want).max())
        assert diff <= TOL, f"{source} {ref}: max abs diff {diff}"


@pytest.mark.parametrize("source", list(SOURCES))
def test_pngs_within_one_level(source, converted, fixtures_dir, cli, tmp_path):
    folder = SOURCES[source][0]
    res = cli(["generate", converted[source], "--z", fixtures_dir / folder / "z.npy", "--out", tmp_path, "--quiet"])
    assert res.exit_code == 0, res.stderr
    for i in range(4):
        got = np.asarray(Image.open(tmp_path / f"{i:06d}.png")).astype(int)
        want = np.asarray(Image.open(fixtures_dir / folder / f"out_z_{i}.png")).astype(int)
        assert got.shape == want.shape == (64, 64, 3)
        assert np.abs(got - want).max() <= 1


def test_which_g_picks_the_training_copy(fixtures_dir, cli, tmp_path):
    """--which g must give the non-EMA generator, which differs clearly from the g_ema references."""
    for folder, file in [("rosinality", "rosinality_train_ckpt.pt"), ("nvidia", "network-snapshot-000000.pkl")]:
        dst = tmp_path / f"{folder}-g.safetensors"
        assert cli(["convert", fixtures_dir / folder / file, dst, "--which", "g", "--quiet"]).exit_code == 0
        raw = tmp_path / f"{folder}.npy"
        res = cli(["generate", dst, "--z", fixtures_dir / folder / "z.npy", "--noise", "none", "--raw", raw,
                   "--out", tmp_path / folder, "--quiet"])
        assert res.exit_code == 0, res.stderr
        assert np.abs(np.load(raw) - np.load(fixtures_dir / folder / "out_z.npy")).max() > 0.1


def test_convert_records_config_and_provenance(converted, cli, fixtures_dir):
    import json

    res = cli(["info", converted["nvidia"], "--json"])
    assert res.exit_code == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["kind"] == "generator" and info["format_version"] == 1
    assert info["config"]["channels"] == [64, 64, 64, 48, 24] and info["config"]["conv_clamp"] == 256.0
    assert info["provenance"]["source"]["format"] == "nvidia-pkl"
    assert info["provenance"]["source"]["which"] == "G_ema"
    assert info["num_tensors"] == 83 + 1  # 83 randomized tensors + w_avg; FIR filters are rebuilt, not stored
    ros = json.loads(cli(["info", converted["rosinality-g_ema"], "--json"]).stdout)
    assert ros["config"]["channels"] == [64, 64, 48, 32, 32] and ros["config"]["mapping_layers"] == 4


def test_existing_destination_needs_force(converted, fixtures_dir, cli):
    from conftest import assert_clean_error

    dst = converted["rosinality-g_ema"]
    before = dst.read_bytes()
    res = cli(["convert", fixtures_dir / "rosinality" / "rosinality_g_ema.pt", dst])
    assert_clean_error(res, "already exists", "--force")
    assert dst.read_bytes() == before
    assert cli(["convert", fixtures_dir / "rosinality" / "rosinality_g_ema.pt", dst, "--force", "--quiet"]).exit_code == 0


def test_missing_latent_avg_is_computed(tmp_path, fixtures_dir, cli):
    """A rosinality file without latent_avg still converts; w_avg is the mean of the mapping output."""
    import torch

    ckpt = torch.load(fixtures_dir / "rosinality" / "rosinality_g_ema.pt", weights_only=True)
    src = tmp_path / "no_avg.pt"
    torch.save({"g_ema": ckpt["g_ema"]}, src)
    dst = tmp_path / "no_avg.safetensors"
    assert cli(["convert", src, dst, "--quiet"]).exit_code == 0
    from bgedit_cli.checkpoint import load_network

    g = load_network(dst, "generator")
    want = torch.as_tensor(ckpt["latent_avg"]).reshape(-1)
    # 10k samples vs the fixture's 4096-sample mean: close, not identical.
    assert (g.w_avg - want).abs().max() < 0.15
