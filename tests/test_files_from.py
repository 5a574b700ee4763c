"""`--files-from FILE|-` and `--skip-existing` on `invert` and `text-edit`: file lists read as the work goes (NUL or
newline separated), a list of 1,000 paths through a pipe, and an interrupted run continued without redoing what
was written."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from bgedit_cli.pipelines import invert as invert_pipeline
from bgedit_cli.pipelines.batch import read_file_list
from conftest import assert_clean_error
from test_shard import random_images, tiny_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("bundle"))


def count_inverted(monkeypatch) -> list[int]:
    """Wrap the batch inversion of `bgedit invert`; the list gets each batch's size."""
    sizes: list[int] = []
    real = invert_pipeline.run_inversion

    def counted(models, imgs, *args, **kwargs):
        sizes.append(imgs.shape[0])
        return real(models, imgs, *args, **kwargs)

    monkeypatch.setattr(invert_pipeline, "run_inversion", counted)
    return sizes


# ----------------------------------------------------------------------------------------------------------
# Reading lists.


@pytest.mark.parametrize("chunk", [1, 3, 1 << 16])
def test_lists_by_line_or_nul_in_any_chunking(chunk):
    names = ["a.png", "dir with space/b.png", "c\nd.png", "é.jpg", os.fsdecode(b"raw\xff.png")]
    nul = b"\0".join(os.fsencode(n) for n in names) + b"\0"
    assert [str(p) for p in read_file_list(io.BytesIO(nul), chunk)] == names  # a newline inside a name is kept
    lines = b"a.png\r\n\nb.png\n  c.png\nlast.png"  # CRLF, an empty line, no newline at the end
    assert [str(p) for p in read_file_list(io.BytesIO(lines), chunk)] == ["a.png", "b.png", "  c.png", "last.png"]
    assert list(read_file_list(io.BytesIO(b""), chunk)) == []


def test_list_is_read_as_the_work_goes():
    class Stream(io.BytesIO):
        def read(self, n=-1):
            self.reads = getattr(self, "reads", 0) + 1
            return super().read(n)

    nul = Stream(b"".join(b"%d.png\0" % i for i in range(10_000)))
    assert next(read_file_list(nul, chunk_size=1024)) == Path("0.png") and nul.reads == 1
    lines = Stream(b"".join(b"%d.png\n" % i for i in range(10_000)))  # decided after PATH_MAX + 1 bytes
    assert next(read_file_list(lines, chunk_size=1024)) == Path("0.png") and lines.reads == 5


# ----------------------------------------------------------------------------------------------------------
# Through the commands.


def test_files_from_stdin_with_1000_paths(cli, bundle, tmp_path, monkeypatch):
    images = random_images(tmp_path / "images", 1000)
    sizes = count_inverted(monkeypatch)
    stdin = "".join(f"{p}\n" for p in images)
    res = cli(["invert", "--files-from", "-", "--out", tmp_path / "out", "--model", bundle, "--steps", "0",
               "--batch-size", "125", "--device", "cpu", "--json"], input=stdin)
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    assert [o["input"] for o in report["outputs"]] == [str(p) for p in images] and report["failed"] == []
    assert sizes == [125] * 8
    assert len(list((tmp_path / "out").glob("*.latent.safetensors"))) == 1000


def test_files_from_file_with_arguments_and_nul(cli, bundle, tmp_path):
    a, b, c = random_images(tmp_path / "images", 3)
    (tmp_path / "list").write_bytes(os.fsencode(b) + b"\0" + os.fsencode(c) + b"\0")
    res = cli(["invert", a, "--files-from", tmp_path / "list", "--out", tmp_path / "out", "--model", bundle,
               "--steps", "0", "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.stderr
    assert [o["input"] for o in json.loads(res.stdout)["outputs"]] == [str(a), str(b), str(c)]


def test_files_from_errors(cli, bundle, tmp_path):
    args = ["--out", tmp_path / "out", "--model", bundle, "--device", "cpu"]
    assert_clean_error(cli(["invert", "--files-from", tmp_path / "nope.txt", *args]), "--files-from", "no such file")
    res = cli(["invert", *args])
    assert res.exit_code == 2 and "--files-from" in res.stderr
    res = cli(["text-edit", "--files-from", tmp_path / "nope.txt", "ocean", "--out", tmp_path / "x.png",
               "--model", bundle])
    assert_clean_error(res, "--out takes one source")


def test_skip_existing_after_ctrl_c_writes_only_the_rest(cli, bundle, tmp_path, monkeypatch):
    images = random_images(tmp_path / "images", 10)
    args = ["invert", *images, "--model", bundle, "--steps", "1", "--batch-size", "2", "--device", "cpu", "--quiet"]
    straight = cli([*args, "--out", tmp_path / "straight"])
    assert straight.exit_code == 0, straight.stderr

    # Ctrl-C while item 4's reconstruction is being written: items 0-3 are done, item 4 has its latent file only.
    real_save_png, calls = invert_pipeline.save_png, []

    def interrupted(path, *a, **k):
        calls.append(path)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_save_png(path, *a, **k)

    monkeypatch.setattr(invert_pipeline, "save_png", interrupted)
    out = tmp_path / "out"
    res = cli([*args, "--out", out])
    assert res.exit_code == 130 and "interrupted" in res.stderr
    monkeypatch.setattr(invert_pipeline, "save_png", real_save_png)
    assert sorted(p.name for p in out.glob("*.png")) == [f"img{i:02d}.png" for i in range(4)]
    assert (out / "img04.latent.safetensors").is_file() and not list(out.glob(".*.tmp"))
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    # Without --skip-existing the first existing output is refused; with it, only items 4-9 are computed.
    assert_clean_error(cli(["invert", images[0], "--model", bundle, "--device", "cpu", "--out", out]), "--force")
    sizes = count_inverted(monkeypatch)
    res = cli([*args, "--out", out, "--skip-existing", "--json"])
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    assert [s["input"] for s in report["skipped"]] == [str(p) for p in images[:4]]
    assert [o["input"] for o in report["outputs"]] == [str(p) for p in images[4:]]
    assert sizes == [2, 2, 2]  # the batches (4, 5), (6, 7), (8, 9)
    assert all(before[p.name] == p.stat().st_mtime_ns for p in out.iterdir() if p.name < "img04")
    for p in (tmp_path / "straight").iterdir():  # the same files, byte for byte, as the uninterrupted run
        assert (out / p.name).read_bytes() == p.read_bytes(), p.name


def test_text_edit_files_from_and_skip_existing(cli, bundle, tmp_path):
    from bgedit_cli.checkpoint import file_sha256, load_network, save_network
    from bgedit_cli.nn.clip_model import ClipModel, clip_config, load_clip_encoder
    from bgedit_cli.nn.text_encoder import build_text_editor

    model = tmp_path / "model"
    model.mkdir()
    for path in bundle.glob("*.safetensors"):
        (model / path.name).write_bytes(path.read_bytes())
    save_network(model / "clip.safetensors", ClipModel(clip_config("tiny", image_resolution=16)), kind="clip")
    g = load_network(model / "generator.safetensors", "generator")
    encoder = load_clip_encoder(model / "clip.safetensors")
    editor = build_text_editor(g.cfg, encoder.embed_dim, "tiny", prompts=("snow",), clip_name=encoder.name,
                               clip_sha256=encoder.sha256, generator_sha256=file_sha256(model / "generator.safetensors"))
    editor.set_prompts(encoder.encode_text(["snow"]))
    save_network(model / "text.safetensors", editor.eval(), kind="text")
    images = random_images(tmp_path / "images", 3)
    (tmp_path / "list").write_text("".join(f"{p}\n" for p in images))
    args = ["text-edit", "--files-from", tmp_path / "list", "snow", "--out-dir", tmp_path / "edits", "--model", model,
            "--steps", "1", "--batch-size", "2", "--device", "cpu", "--json"]
    res = cli(args)
    assert res.exit_code == 0, res.stderr
    first = json.loads(res.stdout)
    assert [o["outputs"] for o in first["outputs"]] == [[str(tmp_path / "edits" / f"img{i:02d}.snow.png")]
                                                        for i in range(3)]
    (tmp_path / "edits" / "img01.snow.png").unlink()
    res = cli([*args, "--skip-existing"])
    assert res.exit_code == 0, res.stderr
    again = json.loads(res.stdout)
    assert [s["input"] for s in again["skipped"]] == [str(images[0]), str(images[2])]
    assert [o["input"] for o in again["outputs"]] == [str(images[1])]
