"""`bgedit doctor`: weight files found or missing (with place, source, published hash), the default bundle's files
and kinds, the system; table and JSON output; exit 0 whatever is missing."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty $BGEDIT_HOME and torch hub cache; wide output so table cells are not folded."""
    monkeypatch.setenv("BGEDIT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.setenv("COLUMNS", "300")
    return tmp_path / "home"


def doctor_json(cli, *args) -> dict:
    result = cli(["doctor", "--json", *args])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return json.loads(result.stdout)


def test_doctor_json_all_missing(cli, home):
    report = doctor_json(cli)
    weights = {w["key"]: w for w in report["weights"]}
    assert list(weights) == ["clip", "alexnet", "inception", "moco"]
    for w in weights.values():
        assert w["found"] is None and w["hash_ok"] is None
        assert w["expected"].startswith(str(home / "weights")) and w["source"].startswith("https://")
    assert weights["clip"]["expected"] == str(home / "weights" / "clip" / "ViT-B-32.pt")
    assert weights["clip"]["published_hash"] == ("sha256:40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58e"
                                                 "ba950af")
    assert weights["alexnet"]["published_hash"] == "sha256:7be5be79"
    assert weights["inception"]["source"].endswith("/v0.2.0/" + INCEPTION_FILE)
    assert weights["inception"]["searched"] == [str(home / "weights"), str(home.parent / "hub" / "checkpoints")]
    assert weights["moco"]["published_hash"] == "md5:a04e12f8" and "facebookresearch/moco" in weights["moco"][
        "hash_published"]
    assert weights["inception"]["purpose"].startswith("FID and KID")
    assert report["bundle"] == {**report["bundle"], "path": str(home / "models" / "default"), "exists": False}
    assert not any(f["present"] for f in report["bundle"]["files"])
    system = report["system"]
    assert system["torch"] == torch.__version__ and system["cuda_available"] == torch.cuda.is_available()
    assert set(system["cpu_flags"]) == {"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}
    assert system["torch_threads"] == torch.get_num_threads() and system["cpu"]


def test_doctor_report_is_what_the_command_prints(cli, home):
    from bgedit_cli import __version__
    from bgedit_cli.pipelines.bundles import doctor_report

    report = doctor_report(verify=False)
    assert report["bgedit"] == __version__ and report["home"] == str(home)
    assert [w["key"] for w in report["weights"]] == ["clip", "alexnet", "inception", "moco"]
    assert report["bundle"]["path"] == str(home / "models" / "default") and report["system"]["cpu"]
    assert json.loads(json.dumps(report, default=str)) == doctor_json(cli)


def test_doctor_json_found_files_and_bundle(cli, home):
    from bgedit_cli.checkpoint import save_checkpoint

    (home / "weights" / "clip").mkdir(parents=True)
    (home / "weights" / INCEPTION_FILE).write_bytes(b"not the real file")
    (home / "weights" / "clip" / "ViT-B-32.pt").write_bytes(b"x")
    bundle = home / "models" / "default"
    bundle.mkdir(parents=True)
    save_checkpoint(bundle / "generator.safetensors", {"w": torch.zeros(2)}, kind="generator", config={})
    save_checkpoint(bundle / "discriminator.safetensors", {"w": torch.zeros(2)}, kind="discriminator", config={})
    (bundle / "segmenter.safetensors").write_bytes(b"garbage")

    report = doctor_json(cli, "--verify")
    weights = {w["key"]: w for w in report["weights"]}
    assert weights["inception"]["found"] == str(home / "weights" / INCEPTION_FILE)
    assert weights["inception"]["hash_ok"] is False  # verified: a dummy is not the published file
    assert weights["clip"]["found"] == str(home / "weights" / "clip" / "ViT-B-32.pt")
    assert weights["alexnet"]["found"] is None and weights["alexnet"]["hash_ok"] is None
    files = {f["name"]: f for f in report["bundle"]["files"]}
    assert report["bundle"]["exists"]
    assert files["generator"]["present"] and files["generator"]["kind"] == "generator"
    assert files["generator"]["format_version"] == 1 and files["generator"]["bytes"] > 0
    assert files["discriminator"]["kind"] == "discriminator"  # beyond the standard set, still listed
    assert files["segmenter"]["present"] and files["segmenter"]["kind"] is None
    assert "not a valid .safetensors file" in files["segmenter"]["error"]
    assert not files["inversion"]["present"]


def test_doctor_verify_accepts_the_published_digest(home):
    from bgedit_cli.checkpoint import file_digest, file_sha256

    path = home / "file.bin"
    home.mkdir()
    path.write_bytes(b"abc" * 1000)
    assert file_digest(path, "md5") == hashlib.md5(b"abc" * 1000).hexdigest()
    assert file_digest(path, "sha256") == file_sha256(path) == hashlib.sha256(b"abc" * 1000).hexdigest()


def test_doctor_table(cli, home):
    (home / "weights").mkdir(parents=True)
    (home / "weights" / INCEPTION_FILE).write_bytes(b"dummy")
    result = cli(["doctor"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    out = result.stdout
    assert "Auxiliary weights" in out and "Default bundle" in out and "System" in out
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") >= 4}
    assert "found" in lines[INCEPTION_FILE] and str(home / "weights" / INCEPTION_FILE) in lines[INCEPTION_FILE]
    assert "missing" in lines["alexnet-owt-7be5be79.pth"]
    assert f"put it at {home / 'weights' / 'alexnet-owt-7be5be79.pth'}" in lines["alexnet-owt-7be5be79.pth"]
    assert "│ alexnet " in lines["alexnet-owt-7be5be79.pth"]  # the name `bgedit weights fetch` takes
    assert "`bgedit weights fetch alexnet` or --alexnet FILE" in out
    assert "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth" in out and "sha256:7be5be79" in out
    assert "avx2:" in out and torch.__version__ in out
    assert not result.stderr.strip()
