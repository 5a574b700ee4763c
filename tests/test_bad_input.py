"""Hostile and broken inputs: each is one `Error: ...` line, exit 1, no traceback, nothing written."""

from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import pytest
import torch

from conftest import assert_clean_error


class _RunsCommand:
    """Unpickling this calls os.system: a safe loader must refuse before anything runs."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _StorageBytes:
    """Pickles as torch.storage._load_from_bytes(<pickle that runs a command>): the inner stream is hostile."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __reduce__(self):
        import torch.storage

        return (torch.storage._load_from_bytes, (self.payload,))


def _convert_fails(cli, src, dst, *fragments):
    res = cli(["convert", src, dst])
    assert_clean_error(res, *fragments)
    assert not dst.exists()
    assert not [p for p in dst.parent.iterdir() if p.name.startswith(f".{dst.name}")], "temp file left behind"


def test_truncated_pt(tmp_path, fixtures_dir, cli):
    data = (fixtures_dir / "rosinality" / "rosinality_g_ema.pt").read_bytes()
    src = tmp_path / "cut.pt"
    src.write_bytes(data[: len(data) // 2])
    _convert_fails(cli, src, tmp_path / "out.safetensors", "cut.pt")


def test_text_file_named_pkl(tmp_path, cli):
    src = tmp_path / "notes.pkl"
    src.write_text("this is not a network\n")
    _convert_fails(cli, src, tmp_path / "out.safetensors", "not a StyleGAN2 checkpoint")


def test_empty_file(tmp_path, cli):
    src = tmp_path / "empty.pkl"
    src.write_bytes(b"")
    _convert_fails(cli, src, tmp_path / "out.safetensors", "empty.pkl")


@pytest.mark.parametrize("suffix", [".pkl", ".pt"])
def test_pickle_that_runs_a_command_is_refused(tmp_path, cli, suffix):
    marker = tmp_path / "PWNED"
    src = tmp_path / f"evil{suffix}"
    if suffix == ".pkl":
        src.write_bytes(pickle.dumps({"G_ema": _RunsCommand(f"touch {marker}")}, protocol=4))
    else:
        torch.save({"g_ema": _RunsCommand(f"touch {marker}")}, src)
    _convert_fails(cli, src, tmp_path / "out.safetensors", f"evil{suffix}")
    assert not marker.exists(), "the pickled command was executed"


def test_hostile_inner_tensor_stream_is_refused(tmp_path, cli):
    marker = tmp_path / "PWNED"
    inner = pickle.dumps(_RunsCommand(f"touch {marker}"), protocol=2)
    src = tmp_path / "evil-inner.pkl"
    src.write_bytes(pickle.dumps({"G_ema": _StorageBytes(inner)}, protocol=4))
    _convert_fails(cli, src, tmp_path / "out.safetensors", "evil-inner.pkl")
    assert not marker.exists()


def test_cut_off_nvidia_pickle(tmp_path, fixtures_dir, cli):
    data = (fixtures_dir / "nvidia" / "network-snapshot-000000.pkl").read_bytes()
    for frac in (0.03, 0.6):
        src = tmp_path / f"cut-{frac}.pkl"
        src.write_bytes(data[: int(len(data) * frac)])
        _convert_fails(cli, src, tmp_path / "out.safetensors", src.name)


def test_missing_source(tmp_path, cli):
    _convert_fails(cli, tmp_path / "nope.pt", tmp_path / "out.safetensors", "no such file")


def test_unknown_which(tmp_path, fixtures_dir, cli):
    src = fixtures_dir / "rosinality" / "rosinality_g_ema.pt"
    dst = tmp_path / "out.safetensors"
    assert_clean_error(cli(["convert", src, dst, "--which", "d"]), "--which d")
    # A converted file has no training copy: asking for it names what is there.
    assert_clean_error(cli(["convert", src, dst, "--which", "g"]), "no 'g' generator", "g_ema")
    assert not dst.exists()


@pytest.fixture
def generator_file(tmp_path, fixtures_dir, cli):
    dst = tmp_path / "g.safetensors"
    assert cli(["convert", fixtures_dir / "rosinality" / "rosinality_g_ema.pt", dst, "--quiet"]).exit_code == 0
    return dst


def _generate_fails(cli, ckpt, out, *fragments, extra=()):
    res = cli(["generate", ckpt, "--seeds", "0-1", "--out", out, *extra])
    assert_clean_error(res, *fragments)
    assert not out.exists() or not any(out.iterdir())


def test_corrupt_safetensors(tmp_path, generator_file, cli):
    data = generator_file.read_bytes()
    cases = {
        "truncated.safetensors": data[: len(data) // 2],
        "garbage.safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + data[24:],
        "tiny.safetensors": b"\x01\x02",
        "huge-header.safetensors": (10**12).to_bytes(8, "little") + data[8:],
    }
    for name, blob in cases.items():
        bad = tmp_path / name
        bad.write_bytes(blob)
        _generate_fails(cli, bad, tmp_path / f"out-{name}", name)
        assert_clean_error(cli(["info", bad]), name)


def test_damaged_tensor_bytes_keep_header_valid(tmp_path, generator_file, cli):
    """Removing a tensor from an otherwise valid file: missing keys are named."""
    from safetensors.torch import load_file, save_file

    from bgedit_cli.checkpoint import read_header

    meta, _ = read_header(generator_file)
    tensors = load_file(str(generator_file))
    tensors.pop("synthesis.const")
    tensors["synthesis.extra"] = torch.zeros(1)
    bad = tmp_path / "keys.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    _generate_fails(cli, bad, tmp_path / "out", "missing: synthesis.const", "unexpected: synthesis.extra")


def test_checkpoint_of_another_kind(tmp_path, cli):
    from bgedit_cli.checkpoint import save_network
    from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Discriminator, DiscriminatorConfig

    d = Discriminator(DiscriminatorConfig.matching(GENERATOR_PRESETS["tiny"]))
    path = tmp_path / "d.safetensors"
    save_network(path, d, kind="discriminator")
    _generate_fails(cli, path, tmp_path / "out", "'discriminator' checkpoint", "'generator'")
    res = cli(["info", path, "--json"])  # info reads any kind
    assert res.exit_code == 0 and '"discriminator"' in res.stdout


def test_foreign_safetensors_without_metadata(tmp_path, cli):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    assert_clean_error(cli(["info", path]), "without bgedit metadata")
    res = cli(["convert", path, tmp_path / "o.safetensors"])
    assert_clean_error(res, "safetensors")


def test_generate_input_errors(tmp_path, generator_file, cli):
    out = tmp_path / "out"
    bad_z = tmp_path / "z.npy"
    np.save(bad_z, np.zeros((2, 7), np.float32))
    assert_clean_error(cli(["generate", generator_file, "--z", bad_z, "--out", out]), "[N, 64]", "[2, 7]")
    bad_w = tmp_path / "w.npy"
    np.save(bad_w, np.zeros((2, 3, 64), np.float32))
    assert_clean_error(cli(["generate", generator_file, "--w", bad_w, "--out", out]), "[N, 10, 64]")
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((1, 64), np.nan, np.float32))
    assert_clean_error(cli(["generate", generator_file, "--z", nan, "--out", out]), "NaN")
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert_clean_error(cli(["generate", generator_file, "--z", obj, "--out", out]), "obj.npy")
    assert_clean_error(cli(["generate", generator_file, "--z", bad_z, "--seeds", "1", "--out", out]), "exactly one")
    assert_clean_error(cli(["generate", generator_file, "--seeds", "5-2", "--out", out]), "empty")
    assert_clean_error(cli(["generate", generator_file, "--seeds", "x", "--out", out]), "--seeds")
    assert_clean_error(cli(["generate", generator_file, "--seeds", "1", "--noise", "loud", "--out", out]), "--noise")
    if not torch.cuda.is_available():
        assert_clean_error(cli(["generate", generator_file, "--seeds", "1", "--device", "cuda", "--out", out]), "CUDA")
    assert not out.exists()


def test_generate_refuses_to_overwrite(tmp_path, generator_file, cli):
    out = tmp_path / "out"
    assert cli(["generate", generator_file, "--seeds", "0-2", "--out", out, "--quiet"]).exit_code == 0
    first = (out / "000001.png").read_bytes()
    shutil.copy(out / "000000.png", out / "000001.png")
    res = cli(["generate", generator_file, "--seeds", "0-2", "--out", out])
    assert_clean_error(res, "000000.png", "--force")
    assert (out / "000001.png").read_bytes() != first  # untouched (still the copy)
    assert cli(["generate", generator_file, "--seeds", "0-2", "--out", out, "--force", "--quiet"]).exit_code == 0
    assert (out / "000001.png").read_bytes() == first
