"""`bgedit bundle install` / `bgedit bundle show`: link or copy a bundle into $BGEDIT_HOME/models/<name>, refuse to
replace one without --force, check the files first; list a bundle's networks with sizes and hashes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from bgedit_cli.checkpoint import file_digest, save_checkpoint, save_network
from conftest import assert_clean_error


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("BGEDIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "home"


def fake_bundle(root: Path, kinds=("generator", "segmenter", "clip"), card: bool = True) -> Path:
    """A bundle whose files have valid headers (tiny tensors, not real networks): enough for install and show."""
    root.mkdir(parents=True)
    for name in kinds:
        save_checkpoint(root / f"{name}.safetensors", {"w": torch.full((3,), float(len(name)))},
                        kind=name.split("-")[0], config={})
    if card:
        (root / "MODEL_CARD.md").write_text("# a test bundle\n")
    (root / "runs" / "segmenter-20260101-000000").mkdir(parents=True)
    (root / "runs" / "segmenter-20260101-000000" / "log.jsonl").write_text("{}\n")
    return root


def install(cli, *args):
    return cli(["bundle", "install", *args])


def show_json(cli, *args) -> dict:
    res = cli(["bundle", "show", *args, "--json"])
    assert res.exit_code == 0, (res.stdout, res.stderr, res.exception)
    return json.loads(res.stdout)


# ----------------------------------------------------------------------------------------------------------
# install


def test_install_links_the_default_and_commands_use_it(cli, home, tmp_path, monkeypatch):
    from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator

    src = fake_bundle(tmp_path / "repo" / "models" / "demo", kinds=("segmenter",))
    torch.manual_seed(0)
    save_network(src / "generator.safetensors", Generator(GENERATOR_PRESETS["tiny"]), kind="generator")
    monkeypatch.chdir(tmp_path / "repo")  # a relative SRC is linked by its absolute path
    res = install(cli, "models/demo")
    assert res.exit_code == 0, (res.stderr, res.exception)
    target = home / "models" / "default"
    assert target.is_symlink() and os.readlink(target) == str(src)
    said = "".join(res.stderr.split())  # the console wraps long paths anywhere
    assert "Installed" in said and "".join(str(src).split()) in said and "generator,segmenter" in said

    # Without --model (or a CKPT) the default bundle's generator is used.
    out = tmp_path / "samples"
    res = cli(["generate", "--seeds", "0-1", "--out", out, "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, (res.stderr, res.exception)
    assert sorted(p.name for p in out.iterdir()) == ["000000.png", "000001.png"]
    res = cli(["generate", src, "--seeds", "0", "--out", tmp_path / "s2", "--device", "cpu", "--quiet"])
    assert res.exit_code == 0 and (tmp_path / "s2" / "000000.png").is_file()  # a bundle folder as CKPT


def test_install_refuses_to_replace_without_force(cli, home, tmp_path):
    a, b = fake_bundle(tmp_path / "a"), fake_bundle(tmp_path / "b")
    target = home / "models" / "default"
    assert install(cli, a).exit_code == 0

    res = install(cli, a, "--json")  # the same link again: nothing to do, exit 0
    assert res.exit_code == 0 and json.loads(res.stdout)["changed"] is False
    assert_clean_error(install(cli, b), str(target), "already exists", f"a link to {a}", "--force")
    assert os.readlink(target) == str(a)

    res = install(cli, b, "--force", "--json")
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["changed"] and report["mode"] == "link" and report["source"] == str(b)
    assert [f["name"] for f in report["files"]] == ["clip", "generator", "segmenter"]
    assert os.readlink(target) == str(b)

    # A link whose folder is gone is still refused (and named as such), then replaced with --force.
    b.rename(tmp_path / "b-moved")
    assert_clean_error(install(cli, a), "no longer exists")
    assert install(cli, a, "--force").exit_code == 0 and os.readlink(target) == str(a)

    # --name installs beside the default.
    assert install(cli, tmp_path / "b-moved", "--name", "other").exit_code == 0
    assert os.readlink(home / "models" / "other") == str(tmp_path / "b-moved")
    assert os.readlink(target) == str(a)


def test_install_copy(cli, home, tmp_path):
    src = fake_bundle(tmp_path / "src", kinds=("generator", "inversion-baseline"))
    target = home / "models" / "default"
    res = install(cli, src, "--copy")
    assert res.exit_code == 0, res.stderr
    assert target.is_dir() and not target.is_symlink()
    assert sorted(p.name for p in target.iterdir()) == ["MODEL_CARD.md", "generator.safetensors",
                                                        "inversion-baseline.safetensors"]  # no runs/
    for name in ("generator.safetensors", "inversion-baseline.safetensors"):
        assert file_digest(target / name, "sha256") == file_digest(src / name, "sha256")
    assert not list((home / "models").glob(".*"))  # no temporary folder left behind

    # A copied bundle is never "the same link": replacing it (by a copy or a link) needs --force.
    assert_clean_error(install(cli, src, "--copy"), "already exists", "a copied bundle")
    other = fake_bundle(tmp_path / "other", kinds=("generator",), card=False)
    assert install(cli, other, "--copy", "--force").exit_code == 0
    assert sorted(p.name for p in target.iterdir()) == ["generator.safetensors"]
    assert install(cli, src, "--force").exit_code == 0 and os.readlink(target) == str(src)
    assert not list((home / "models").glob(".*"))


@pytest.mark.parametrize("copy", [False, True])
def test_install_checks_the_bundle_first(cli, home, tmp_path, copy):
    flags = ["--copy"] if copy else []
    target = home / "models" / "default"
    assert_clean_error(install(cli, tmp_path / "nowhere", *flags), "no such folder")
    (tmp_path / "file").write_text("x")
    assert_clean_error(install(cli, tmp_path / "file", *flags), "not a folder")
    no_gen = fake_bundle(tmp_path / "no-gen", kinds=("segmenter",))
    assert_clean_error(install(cli, no_gen, *flags), "no generator.safetensors", "make demo-train")

    broken = fake_bundle(tmp_path / "broken")
    (broken / "clip.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")  # cut off
    assert_clean_error(install(cli, broken, *flags), str(broken / "clip.safetensors"), "not a valid .safetensors")
    mislabelled = fake_bundle(tmp_path / "mislabelled")
    save_checkpoint(mislabelled / "text.safetensors", {"w": torch.zeros(1)}, kind="clip", config={})
    assert_clean_error(install(cli, mislabelled, *flags), "text.safetensors", "'clip' checkpoint", "'text'")
    assert not target.exists() and not target.is_symlink()

    good = fake_bundle(tmp_path / "good")
    assert_clean_error(install(cli, good, "--name", "../x", *flags), "--name")
    assert not (home / "x").exists()


def test_install_never_deletes_its_source(cli, home, tmp_path):
    src = fake_bundle(tmp_path / "src")
    assert install(cli, src, "--copy").exit_code == 0
    target = home / "models" / "default"
    # Installing the installed copy over itself (or a folder inside it) would remove what it copies.
    assert_clean_error(install(cli, target, "--copy", "--force"), "install from another folder")
    assert_clean_error(install(cli, target, "--force"), "install from another folder")
    assert (target / "generator.safetensors").is_file()


# ----------------------------------------------------------------------------------------------------------
# show


def test_show_lists_present_and_missing_with_hashes(cli, home, tmp_path):
    src = fake_bundle(tmp_path / "src", kinds=("generator", "segmenter", "discriminator"))
    assert install(cli, src).exit_code == 0
    (src / "inversion.safetensors").write_bytes(b"garbage")  # damaged after installing: show says so

    for args in ([], ["default"], [str(src)]):  # the default, by name, by path
        report = show_json(cli, *args)
        files = {f["name"]: f for f in report["files"]}
        assert list(files) == ["generator", "segmenter", "inversion", "inversion-baseline", "clip", "text",
                               "discriminator"]
        assert files["generator"]["present"] and files["generator"]["kind"] == "generator"
        assert files["generator"]["sha256"] == file_digest(src / "generator.safetensors", "sha256")
        assert files["generator"]["bytes"] == (src / "generator.safetensors").stat().st_size
        assert not files["text"]["present"] and files["text"]["sha256"] is None
        assert files["inversion"]["present"] and "not a valid .safetensors" in files["inversion"]["error"]
        assert report["model_card"].endswith("MODEL_CARD.md")
    assert show_json(cli)["link"] == str(src) and show_json(cli, str(src))["link"] is None

    res = cli(["bundle", "show"])
    assert res.exit_code == 0, res.stderr
    digest = file_digest(src / "segmenter.safetensors", "sha256")[:12]
    assert digest in res.stdout and "missing" in res.stdout and "unreadable" in res.stdout
    assert f"-> {src}" in res.stdout


def test_show_without_a_bundle(cli, home, tmp_path):
    assert_clean_error(cli(["bundle", "show"]), str(home / "models" / "default"), "bgedit bundle install")
    assert_clean_error(cli(["bundle", "show", "nothing"]), "bgedit bundle install")
    assert_clean_error(cli(["bundle", "show", str(tmp_path / "no" / "such")]), "no model bundle there")


def test_a_missing_default_bundle_says_how_to_install_one(cli, home, tmp_path):
    assert_clean_error(cli(["invert", tmp_path / "x.png", "--out", tmp_path / "inv"]),
                       str(home / "models" / "default"), "no default model bundle", "bgedit bundle install")
    assert_clean_error(cli(["generate", "--seeds", "0", "--out", tmp_path / "s"]), "bgedit bundle install")
