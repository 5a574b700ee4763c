"""`bgedit weights fetch` against a local HTTP server (tests/local_http.py, 127.0.0.1 only) serving small files made
here in the publishers' formats with random weights: resume with Range, servers that ignore Range, cut-short
bodies, 500s, 404, wrong bytes, an unreachable host, a full disk, --from; each ends in the right file or one
`Error:` line, never a corrupt file at the destination. Then `bgedit evaluate` with the fetched Inception and
AlexNet files computes FID, KID and LPIPS.

The registry entries point at the local server and at the test files' digests (monkeypatched `REGISTRY`): the
product's entries keep the publishers' URLs and hashes."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_clean_error
from local_http import LocalServer

from bgedit_cli import download, weights
from bgedit_cli.errors import InputError

MOCO_FILE = weights.MOCO.names[0]


def torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def moco_bytes() -> bytes:
    """A MoCo release file in miniature: the same dict layout, a few random tensors (~50 KB)."""
    g = torch.Generator().manual_seed(0)
    state = {"module.encoder_q.conv1.weight": torch.randn(64, 3, 7, 7, generator=g),
             "module.encoder_q.fc.0.weight": torch.randn(16, 8, generator=g)}
    return torch_bytes({"epoch": 800, "arch": "resnet50", "state_dict": state, "optimizer": {}})


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("BGEDIT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.delenv("BGEDIT_MIRROR", raising=False)
    monkeypatch.setattr(download, "RETRY", download.RetryPolicy(attempts=4, base_delay_s=0.01, timeout_s=10))
    return tmp_path / "home"


def serve_as(monkeypatch, server: LocalServer, spec: weights.WeightSpec, data: bytes, *, mode: str = "ok"):
    """Point `spec`'s registry entry at `server` and at `data`'s digest; return the patched spec."""
    server.files[spec.file_name] = data
    digest = hashlib.new(spec.hash_algo, data).hexdigest()
    patched = dataclasses.replace(spec, source=server.url(mode, spec.file_name),
                                  published_hash=digest[: len(spec.published_hash)])
    monkeypatch.setitem(weights.REGISTRY, spec.key, patched)
    return patched


@pytest.fixture
def server():
    with LocalServer({}) as s:
        yield s


def fetch(cli, *args):
    return cli(["weights", "fetch", *args, "--quiet"])


def no_leftovers(folder: Path) -> list[str]:
    """Temp files beside the destination (a `.part` is kept only when a resume is possible)."""
    return sorted(p.name for p in folder.glob(".*") if not p.name.endswith(".verified.json")) if folder.exists() \
        else []


# ----------------------------------------------------------------------------------------------------------
# The happy path, doctor, idempotence.


def test_fetch_verifies_installs_and_doctor_shows_it_verified(cli, home, server, monkeypatch, moco_bytes):
    serve_as(monkeypatch, server, weights.MOCO, moco_bytes)
    result = cli(["weights", "fetch", "moco", "--json"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    out = json.loads(result.stdout)
    dest = home / "weights" / MOCO_FILE
    assert out["failed"] == [] and out["files"][0]["status"] == "downloaded" and out["files"][0]["path"] == str(dest)
    assert dest.read_bytes() == moco_bytes and no_leftovers(dest.parent) == []
    assert out["files"][0]["hash"] == "md5:" + hashlib.md5(moco_bytes).hexdigest()

    doctor = json.loads(cli(["doctor", "--json"]).stdout)
    row = {w["key"]: w for w in doctor["weights"]}["moco"]
    assert row["found"] == str(dest) and row["hash_ok"] is True and row["verified"] == "at fetch"
    assert {w["key"]: w for w in doctor["weights"]}["alexnet"]["hash_ok"] is None  # missing

    # Again: kept, nothing downloaded.
    before = len(server.log)
    again = cli(["weights", "fetch", "moco", "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["files"][0]["status"] == "present"
    assert len(server.log) == before

    # Changed on disk: doctor no longer trusts the record; --verify hashes it.
    dest.write_bytes(moco_bytes[:-1] + b"x")
    row = {w["key"]: w for w in json.loads(cli(["doctor", "--json"]).stdout)["weights"]}["moco"]
    assert row["hash_ok"] is None
    row = {w["key"]: w for w in json.loads(cli(["doctor", "--json", "--verify"]).stdout)["weights"]}["moco"]
    assert row["hash_ok"] is False and row["verified"] == "now"
    # ... and fetch refuses to replace it without --force.
    assert_clean_error(fetch(cli, "moco"), str(dest), "--force")
    assert fetch(cli, "moco", "--force").exit_code == 0 and dest.read_bytes() == moco_bytes


def test_mirror_option_env_and_dir(cli, home, server, monkeypatch, moco_bytes, tmp_path):
    serve_as(monkeypatch, server, weights.MOCO, moco_bytes, mode="missing")  # the "publisher" would 404
    result = fetch(cli, "moco", "--mirror", server.url("ok"), "--dir", tmp_path / "w")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "w" / MOCO_FILE).read_bytes() == moco_bytes
    monkeypatch.setenv("BGEDIT_MIRROR", server.url("ok") + "/")
    assert fetch(cli, "moco").exit_code == 0 and (home / "weights" / MOCO_FILE).read_bytes() == moco_bytes
    assert [r[0] for r in server.log] == ["ok", "ok"]


# ----------------------------------------------------------------------------------------------------------
# Servers that misbehave.


def test_body_cut_short_is_resumed_with_range(cli, home, server, monkeypatch, moco_bytes):
    serve_as(monkeypatch, server, weights.MOCO, moco_bytes, mode="truncate-once")
    result = fetch(cli, "moco")
    assert result.exit_code == 0, result.stderr
    assert (home / "weights" / MOCO_FILE).read_bytes() == moco_bytes
    (_, _, r1, s1, n1), (_, _, r2, s2, n2) = server.log
    assert r1 is None and s1 == 200 and n1 == len(moco_bytes) // 2
    assert r2 == f"bytes={n1}-" and s2 == 206 and n1 + n2 == len(moco_bytes)  # only the rest was sent


def test_partial_file_resumed_or_restarted_when_range_is_ignored(cli, home, server, monkeypatch, moco_bytes):
    dest = home / "weights" / MOCO_FILE
    part = download.part_path(dest)
    for mode, status in (("ok", 206), ("norange", 200)):
        serve_as(monkeypatch, server, weights.MOCO, moco_bytes, mode=mode)
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(moco_bytes[:1000])
        result = fetch(cli, "moco", "--force")
        assert result.exit_code == 0, result.stderr
        assert dest.read_bytes() == moco_bytes and not part.exists()
        _, _, rng, got_status, sent = server.requests(mode)[-1]
        assert rng == "bytes=1000-" and got_status == status
        assert sent == (len(moco_bytes) - 1000 if mode == "ok" else len(moco_bytes))


def test_stale_partial_file_of_another_version_is_restarted(cli, home, server, monkeypatch, moco_bytes):
    serve_as(monkeypatch, server, weights.MOCO, moco_bytes)
    part = download.part_path(home / "weights" / MOCO_FILE)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 1000)  # not a prefix of the file: the resumed whole fails the hash once
    assert fetch(cli, "moco").exit_code == 0
    assert (home / "weights" / MOCO_FILE).read_bytes() == moco_bytes
    assert [r[2] for r in server.log] == ["bytes=1000-", None]


def test_500_twice_then_success(cli, home, server, monkeypatch, moco_bytes):
    serve_as(monkeypatch, server, weights.MOCO, moco_bytes, mode="flaky")
    result = fetch(cli, "moco")
    assert result.exit_code == 0, result.stderr
    assert [r[3] for r in server.log] == [500, 500, 200]
    assert (home / "weights" / MOCO_FILE).read_bytes() == moco_bytes


def test_404_is_one_line_naming_the_url_and_the_manual_route(cli, home, server, monkeypatch, moco_bytes):
    spec = serve_as(monkeypatch, server, weights.MOCO, moco_bytes, mode="missing")
    assert_clean_error(fetch(cli, "moco"), spec.source, "404", "--from FILE")
    assert len(server.log) == 1  # not retried
    assert not (home / "weights" / MOCO_FILE).exists() and no_leftovers(home / "weights") == []


def test_wrong_bytes_are_removed_and_both_hashes_printed(cli, home, server, monkeypatch, moco_bytes):
    spec = serve_as(monkeypatch, server, weights.MOCO, moco_bytes, mode="wrong")
    wrong = bytes((b + 1) % 256 for b in moco_bytes)
    result = fetch(cli, "moco")
    assert_clean_error(result, "hash mismatch", f"expected md5:{spec.published_hash}",
                       "got md5:" + hashlib.md5(wrong).hexdigest())
    assert not (home / "weights" / MOCO_FILE).exists() and no_leftovers(home / "weights") == []


def test_server_that_always_cuts_short_gives_up_then_a_rerun_resumes(cli, home, server, monkeypatch, moco_bytes):
    serve_as(monkeypatch, server, weights.MOCO, moco_bytes, mode="truncate")
    dest = home / "weights" / MOCO_FILE
    result = fetch(cli, "moco")
    assert_clean_error(result, "gave up after 4 tries", "run the command again to resume")
    assert not dest.exists() and len(server.log) == 4
    kept = download.part_path(dest).read_bytes()
    assert 0 < len(kept) < len(moco_bytes) and moco_bytes.startswith(kept)  # what arrived, for the next run
    serve_as(monkeypatch, server, weights.MOCO, moco_bytes, mode="ok")
    assert fetch(cli, "moco").exit_code == 0 and dest.read_bytes() == moco_bytes
    assert server.log[-1][1:4] == (MOCO_FILE, f"bytes={len(kept)}-", 206)


def test_unreachable_host_says_how_to_download_by_hand(cli, home, monkeypatch, moco_bytes):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/{MOCO_FILE}"
    monkeypatch.setitem(weights.REGISTRY, "moco", dataclasses.replace(weights.MOCO, source=url))
    assert_clean_error(fetch(cli, "moco"), "cannot reach 127.0.0.1", url, "bgedit weights fetch moco --from FILE")
    assert not (home / "weights").exists() or no_leftovers(home / "weights") == []


def test_from_file_is_verified_before_it_is_put_in_place(cli, home, server, monkeypatch, moco_bytes, tmp_path):
    serve_as(monkeypatch, server, weights.MOCO, moco_bytes)
    good, bad = tmp_path / "good.tar", tmp_path / "bad.tar"
    good.write_bytes(moco_bytes)
    bad.write_bytes(moco_bytes[:-10])
    assert_clean_error(fetch(cli, "moco", "--from", bad), "hash mismatch", "nothing was installed")
    assert not (home / "weights" / MOCO_FILE).exists() and no_leftovers(home / "weights") == []
    result = cli(["weights", "fetch", "moco", "--from", good, "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["files"][0]["status"] == "installed"
    assert (home / "weights" / MOCO_FILE).read_bytes() == moco_bytes and server.log == []


def test_disk_full_before_and_while_writing(cli, home, server, monkeypatch, moco_bytes):
    serve_as(monkeypatch, server, weights.MOCO, moco_bytes)
    real_usage = download.shutil.disk_usage
    monkeypatch.setattr(download.shutil, "disk_usage", lambda p: real_usage(p)._replace(free=100))
    assert_clean_error(fetch(cli, "moco"), "not enough disk space", "needed")
    monkeypatch.setattr(download.shutil, "disk_usage", real_usage)

    class FullDisk(io.BytesIO):
        def write(self, b):
            raise OSError(errno.ENOSPC, "No space left on device")

    real_open = open
    monkeypatch.setattr(download, "open", lambda p, mode="r", *a, **k: FullDisk() if "a" in mode or "w" in mode
                        else real_open(p, mode, *a, **k), raising=False)
    assert_clean_error(fetch(cli, "moco"), "disk full", "removed")
    assert not (home / "weights" / MOCO_FILE).exists() and no_leftovers(home / "weights") == []


def test_fetch_many_reports_each_file_and_goes_on_after_a_failure(home, server, monkeypatch, moco_bytes):
    serve_as(monkeypatch, server, weights.MOCO, moco_bytes)
    serve_as(monkeypatch, server, weights.ALEXNET, b"alexnet", mode="missing")
    with pytest.raises(InputError, match="unknown weight file 'vgg'"):
        weights.fetch_many(["moco", "vgg"])
    assert server.log == []  # every name is checked before anything is fetched

    stages, shown = [], []
    report = weights.fetch_many(["alexnet", "moco"], on_done=shown.append,
                                progress=lambda name: lambda stage, done, total: stages.append((name, stage)))
    assert [r["name"] for r in report.done] == ["moco"] and shown == report.done
    assert report.done[0]["status"] == "downloaded" and (home / "weights" / MOCO_FILE).read_bytes() == moco_bytes
    assert [f["name"] for f in report.failed] == ["alexnet"] and "404" in report.failed[0]["error"]
    assert "\n" not in report.failed[0]["error"] and ("moco", "downloading") in {s for s in stages}


def test_usage_errors(cli, home):
    assert cli(["weights", "fetch"]).exit_code == 2
    assert cli(["weights", "fetch", "moco", "--all"]).exit_code == 2
    assert cli(["weights", "fetch", "moco", "clip", "--from", "x"]).exit_code == 2
    assert_clean_error(fetch(cli, "vgg"), "unknown weight file 'vgg'", "clip, alexnet, inception, moco")


def test_registry_holds_the_published_hashes():
    reg = weights.REGISTRY
    assert list(reg) == ["clip", "alexnet", "inception", "moco"]
    import importlib.util
    import re

    # The clip package's own table (read as text: importing it costs seconds).
    clip_py = Path(importlib.util.find_spec("clip").submodule_search_locations[0]) / "clip.py"
    clip_url = re.search(r'"ViT-B/32": "([^"]+)"', clip_py.read_text())[1]
    assert reg["clip"].source == clip_url and reg["clip"].published_hash == clip_url.split("/")[-2]
    assert reg["alexnet"].hash_label == "sha256:7be5be79" and "7be5be79" in reg["alexnet"].file_name
    assert reg["inception"].hash_label == "sha256:6726825d" and "6726825d" in reg["inception"].file_name
    assert reg["moco"].hash_label == "md5:a04e12f8"
    for spec in reg.values():
        assert spec.source.startswith("https://") and spec.file_name == Path(spec.names[0]).name


# ----------------------------------------------------------------------------------------------------------
# Fetched files make the metrics real.


@pytest.fixture(scope="module")
def random_weights() -> dict[str, bytes]:
    """torch-fidelity's Inception-v3 state dict and torchvision AlexNet's `features.*` (the LPIPS trunk; the
    classifier, 230 MB of the real file that LPIPS never reads, is left out), random, as `torch.save` bytes."""
    import torchvision
    from unittest import mock

    from torch_fidelity import feature_extractor_inceptionv3 as tf_inception

    torch.manual_seed(0)
    with mock.patch.object(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda *a, **k: None), \
            mock.patch.object(tf_inception, "load_state_dict_from_url", lambda *a, **k: {}):
        net = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    alexnet = {k: v for k, v in torchvision.models.alexnet().state_dict().items() if k.startswith("features.")}
    return {"inception": torch_bytes(net.state_dict()), "alexnet": torch_bytes(alexnet)}


def test_fetched_inception_and_alexnet_give_fid_kid_and_lpips(cli, home, server, monkeypatch, random_weights,
                                                             tmp_path):
    from bgedit_cli.metrics import features

    monkeypatch.setattr(features, "INCEPTION_LAYER", "64")  # the 64-d pool features: same path, no 2048-d sqrtm
    for key in ("inception", "alexnet"):
        serve_as(monkeypatch, server, weights.REGISTRY[key], random_weights[key], mode="missing")
    result = fetch(cli, "inception", "alexnet", "--mirror", server.url("ok"))
    assert result.exit_code == 0, result.stderr

    rng = np.random.default_rng(0)
    for folder, colour in (("real", 60), ("fake", 180)):
        (tmp_path / folder).mkdir()
        for i in range(6):
            pixels = np.clip(rng.normal(colour, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / folder / f"{i}.png")
    result = cli(["evaluate", "--real", tmp_path / "real", "--fake", tmp_path / "fake", "--paired", "--metrics",
                  "fid,kid,lpips", "--device", "cpu", "--quiet", "--json"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    metrics = json.loads(result.stdout)["metrics"]["fake vs real"]
    for name in ("fid", "kid", "lpips"):
        assert metrics[name]["value"] is not None and np.isfinite(metrics[name]["value"]), metrics[name]
    assert metrics["fid"]["value"] > 0 and metrics["lpips"]["value"] > 0


def test_tests_cannot_reach_past_loopback():
    # conftest.loopback_only: a download test that forgot its local server fails instead of going online.
    with pytest.raises(AssertionError, match="127.0.0.1 only"):
        socket.create_connection(("192.0.2.1", 80), timeout=0.1)  # TEST-NET-1, never routed
