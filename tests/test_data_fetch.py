"""`bgedit data fetch ade20k` against a local HTTP server (127.0.0.1 only) serving a tiny ADE20K-layout zip made
here, and `bgedit data check` on fetched, synthetic and broken folders. The dataset entry points at the local
server, the test zip's SHA-1 and its counts (monkeypatched `DATASETS`); the product's entry keeps MIT's URL."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import assert_clean_error
from local_http import LocalServer

from bgedit_cli import download
from bgedit_cli.data import fetch as data_fetch

TOP = "ADEChallengeData2016"
ZIP = "ADEChallengeData2016.zip"


def png_bytes(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def ade20k_entries(num_train: int = 3, num_val: int = 1) -> dict[str, bytes]:
    """The release's layout in miniature: JPEG images, mode-L annotation PNGs (ids 0..150), objectInfo150.txt."""
    rng = np.random.default_rng(0)
    entries = {f"{TOP}/objectInfo150.txt": b"Idx\tRatio\tTrain\tVal\tName\n1\t0.1\t1\t1\twall\n"}
    for split, prefix, n in (("training", "ADE_train", num_train), ("validation", "ADE_val", num_val)):
        for i in range(1, n + 1):
            stem = f"{prefix}_{i:08d}"
            entries[f"{TOP}/images/{split}/{stem}.jpg"] = png_bytes(
                rng.integers(0, 255, (24, 32, 3), dtype=np.uint8), "JPEG")
            entries[f"{TOP}/annotations/{split}/{stem}.png"] = png_bytes(
                rng.integers(0, 151, (24, 32), dtype=np.uint8))
    return entries


def make_zip(entries: dict[str, bytes], *, links: tuple[str, ...] = (), stored: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, "/etc/passwd")
    return buf.getvalue()


def use_zip(monkeypatch, server: LocalServer | None, data: bytes, counts=(3, 1), mode: str = "ok"):
    """Point the ade20k entry at `server` (or at an address never contacted) and at `data`'s SHA-1 and counts."""
    if server is not None:
        server.files[ZIP] = data
    source = server.url(mode, ZIP) if server is not None else f"http://127.0.0.1:9/{ZIP}"
    spec = dataclasses.replace(data_fetch.ADE20K, source=source, published_hash=hashlib.sha1(data).hexdigest(),
                               counts={"training": counts[0], "validation": counts[1]})
    monkeypatch.setitem(data_fetch.DATASETS, "ade20k", spec)
    return spec


@pytest.fixture
def server(monkeypatch):
    monkeypatch.delenv("BGEDIT_MIRROR", raising=False)
    monkeypatch.setattr(download, "RETRY", download.RetryPolicy(attempts=3, base_delay_s=0.01, timeout_s=10))
    with LocalServer({}) as s:
        yield s


def data_fetch_cli(cli, out: Path, *args):
    return cli(["data", "fetch", "ade20k", "--out", out, "--quiet", *args])


def nothing_unpacked(out: Path) -> bool:
    return not (out / TOP).exists() and not [p for p in out.glob(f".{TOP}*")] if out.exists() else True


# ----------------------------------------------------------------------------------------------------------
# Fetch.


def test_tiny_ade20k_zip_fetches_unpacks_and_passes_check(cli, server, monkeypatch, tmp_path):
    use_zip(monkeypatch, server, make_zip(ade20k_entries()), mode="truncate-once")  # resumed on the way
    out = tmp_path / "data"
    result = cli(["data", "fetch", "ade20k", "--out", out, "--json"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    summary = json.loads(result.stdout)
    root = out / TOP
    assert summary["data"] == str(root) and summary["downloaded"] and not summary["zip_kept"]
    assert summary["check"]["ok"] and summary["check"]["splits"]["training"]["images"] == 3
    assert sorted(p.name for p in (root / "annotations" / "validation").iterdir()) == ["ADE_val_00000001.png"]
    assert not (out / ZIP).exists() and [p.name for p in out.iterdir()] == [TOP]  # no temp folder, no part file
    assert server.log[1][2].startswith("bytes=") and server.log[1][3] == 206

    check = cli(["data", "check", out, "--json"])  # the parent folder is accepted too
    assert check.exit_code == 0, check.stderr
    assert json.loads(check.stdout)["problems"] == []

    from bgedit_cli.data.ade20k import ADE20KDataset

    item = ADE20KDataset(summary["data"], "training", resolution=16)[0]
    assert item["img"].shape == (3, 16, 16) and item["seg"].max() <= 150

    # Again: refused without --force; with it, replaced (the zip is kept with --keep-zip).
    assert_clean_error(data_fetch_cli(cli, out), str(root), "--force")
    assert data_fetch_cli(cli, out, "--force", "--keep-zip").exit_code == 0
    assert (out / ZIP).is_file() and (root / "images" / "training" / "ADE_train_00000003.jpg").is_file()


def test_from_zip_and_human_output_name_the_data_folder(cli, monkeypatch, tmp_path):
    data = make_zip(ade20k_entries())
    use_zip(monkeypatch, None, data)
    (tmp_path / ZIP).write_bytes(data)
    out = tmp_path / "data"
    result = cli(["data", "fetch", "ade20k", "--out", out, "--from", tmp_path / ZIP])
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stderr.split())
    assert f"--data {out / TOP}" in text and "3 training" in text and "sha1:" in text
    assert (tmp_path / ZIP).is_file()  # the user's zip is never removed


def test_zip_slip_and_links_are_refused_before_anything_is_written(cli, monkeypatch, tmp_path):
    out = tmp_path / "deep" / "data"
    for bad, kw, says in (("../evil.txt", {}, "zip-slip"), (f"{TOP}/../../evil.txt", {}, "zip-slip"),
                          ("/tmp/evil.txt", {}, "zip-slip"), (f"{TOP}/images/link.jpg", {"links": True}, "link")):
        entries = ade20k_entries()
        if kw:
            data = make_zip(entries, links=(bad,))
        else:
            data = make_zip({**entries, bad: b"pwned"})
        use_zip(monkeypatch, None, data)
        (tmp_path / ZIP).write_bytes(data)
        assert_clean_error(data_fetch_cli(cli, out, "--from", tmp_path / ZIP), "refused", says, "nothing was unpacked")
        assert nothing_unpacked(out)
        assert not list(tmp_path.rglob("evil.txt"))


def test_corrupt_entry_wrong_hash_and_count_mismatch(cli, server, monkeypatch, tmp_path):
    out = tmp_path / "data"
    # A stored entry with one flipped byte: the zip's CRC-32 catches it while unpacking.
    data = bytearray(make_zip(ade20k_entries(), stored=True))
    pos = data.index(b"wall")
    data[pos] ^= 0x20
    use_zip(monkeypatch, None, bytes(data))
    (tmp_path / ZIP).write_bytes(bytes(data))
    assert_clean_error(data_fetch_cli(cli, out, "--from", tmp_path / ZIP), "corrupt entry", "CRC")
    assert nothing_unpacked(out)

    # A zip that is not the published one: hash mismatch, nothing unpacked, both digests printed.
    good = make_zip(ade20k_entries())
    spec = use_zip(monkeypatch, server, good, mode="wrong")
    assert_clean_error(data_fetch_cli(cli, out), "hash mismatch", f"expected sha1:{spec.published_hash}", "got sha1:")
    assert nothing_unpacked(out) and not (out / ZIP).exists()

    # The layout check after unpacking: the release's counts are compared.
    use_zip(monkeypatch, server, good, counts=(20210, 2000))
    assert_clean_error(data_fetch_cli(cli, out), "training: 3 images, the release has 20210", "data check")
    assert (out / ZIP).is_file()  # kept for a look


def test_404_names_the_url_and_from(cli, server, monkeypatch, tmp_path):
    spec = use_zip(monkeypatch, server, b"", mode="missing")
    assert_clean_error(data_fetch_cli(cli, tmp_path / "d"), "404", spec.source, "--from FILE")
    assert_clean_error(cli(["data", "fetch", "coco", "--out", tmp_path]), "unknown dataset 'coco'", "ade20k")


# ----------------------------------------------------------------------------------------------------------
# Check.


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    from bgedit_cli.cli.app import app

    out = tmp_path_factory.mktemp("synth") / "scenes"
    result = CliRunner().invoke(app, ["data", "synth", "--out", str(out), "--num", "6", "--resolution", "16",
                                      "--mixing-pairs", "0", "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def test_check_accepts_a_synth_folder_whatever_its_counts(cli, scenes):
    result = cli(["data", "check", scenes, "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    total = sum(s["images"] for s in report["splits"].values())
    assert report["ok"] and total == 6 and report["expected"] is None
    table = cli(["data", "check", scenes])
    assert table.exit_code == 0 and "ok" in table.stdout and "training" in table.stdout
    # Against the release's counts, it is not ADE20K.
    assert_clean_error(cli(["data", "check", scenes, "--expect", "ade20k", "--quiet"]), "the release has 20210")


def test_check_reports_every_kind_of_problem(cli, scenes, tmp_path):
    import shutil

    root = tmp_path / "scenes"
    shutil.copytree(scenes, root)
    images, maps = root / "images" / "training", root / "annotations" / "training"
    stems = sorted(p.stem for p in images.glob("*.png"))
    (maps / f"{stems[0]}.png").unlink()                                   # image without a map
    (images / f"{stems[1]}.png").unlink()                                 # map without an image
    (images / f"{stems[2]}.png").write_bytes((images / f"{stems[2]}.png").read_bytes()[:60])  # unreadable
    Image.fromarray(np.full((16, 16), 200, np.uint8)).save(maps / f"{stems[3]}.png")          # unknown id 200
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(maps / f"{stems[4]}.png")                # wrong size
    result = cli(["data", "check", root, "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)["splits"]["training"]
    assert report["images_without_maps"] == [f"{stems[0]}.png"]
    assert report["maps_without_images"] == [f"{stems[1]}.png"]
    assert list(report["unreadable"]) == [f"{stems[2]}.png"]
    assert report["unknown_ids"] == {"200": 1} and report["maps_with_unknown_ids"] == [f"{stems[3]}.png"]
    assert report["size_mismatch"] == [stems[4]]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "1 image(s) without a map" in lines[0]
    assert_clean_error(cli(["data", "check", tmp_path / "nope"]), "no such folder")
    assert_clean_error(cli(["data", "check", tmp_path]), "not an ADE20K-layout folder")
