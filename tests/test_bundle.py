"""Model bundles: default location, file lookup, run folders."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bgedit_cli.bundle import (BUNDLE_FILES, bgedit_home, bundle_file, default_bundle, latest_run_dir, new_run_dir,
                               resolve_bundle, weights_dir)
from bgedit_cli.errors import BgeditError, CheckpointError


def test_default_bundle_follows_bgedit_home(monkeypatch, tmp_path):
    monkeypatch.setenv("BGEDIT_HOME", str(tmp_path / "home"))
    assert bgedit_home() == tmp_path / "home"
    assert default_bundle() == tmp_path / "home" / "models" / "default"
    assert weights_dir() == tmp_path / "home" / "weights"
    assert resolve_bundle(None) == default_bundle()
    assert resolve_bundle(tmp_path / "mine") == tmp_path / "mine"


def test_default_bundle_without_bgedit_home(monkeypatch, tmp_path):
    monkeypatch.delenv("BGEDIT_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_bundle() == tmp_path / ".cache" / "bgedit" / "models" / "default"
    monkeypatch.setenv("BGEDIT_HOME", "")  # empty counts as unset
    assert bgedit_home() == tmp_path / ".cache" / "bgedit"
    assert resolve_bundle(Path("~/b")) == tmp_path / "b"


def test_bundle_file_names_and_missing_file_error(tmp_path):
    assert set(BUNDLE_FILES) == {"generator", "segmenter", "inversion", "inversion-baseline", "clip", "text"}
    assert all(name == f"{kind}.safetensors" for kind, name in BUNDLE_FILES.items())
    with pytest.raises(CheckpointError) as info:
        bundle_file(tmp_path, "segmenter")
    message = str(info.value)
    assert str(tmp_path / "segmenter.safetensors") in message and "bgedit train segmenter" in message
    assert isinstance(info.value, BgeditError)
    with pytest.raises(CheckpointError, match="bgedit train inversion"):
        bundle_file(tmp_path, "inversion-baseline")
    with pytest.raises(CheckpointError, match="bgedit convert"):
        bundle_file(tmp_path, "generator")
    # Not required to exist, or present, or overridden by a single-file flag.
    assert bundle_file(tmp_path, "text", must_exist=False) == tmp_path / "text.safetensors"
    (tmp_path / "clip.safetensors").write_bytes(b"x")
    assert bundle_file(tmp_path, "clip") == tmp_path / "clip.safetensors"
    other = tmp_path / "elsewhere.safetensors"
    other.write_bytes(b"x")
    assert bundle_file(tmp_path, "generator", override=other) == other
    with pytest.raises(CheckpointError, match="missing.safetensors"):
        bundle_file(tmp_path, "generator", override=tmp_path / "missing.safetensors")


def test_run_folders(tmp_path):
    assert latest_run_dir(tmp_path, "segmenter") is None
    a = new_run_dir(tmp_path, "segmenter")
    b = new_run_dir(tmp_path, "segmenter")  # same second: suffixed, never shared
    assert a != b and a.is_dir() and b.is_dir() and a.parent == tmp_path / "runs"
    assert a.name.startswith("segmenter-") and b.name.startswith(a.name)
    assert latest_run_dir(tmp_path, "segmenter") is None  # no state saved yet: nothing to resume
    (a / "state.safetensors").write_bytes(b"a")
    (b / "state.safetensors").write_bytes(b"b")
    now = time.time()
    os.utime(a / "state.safetensors", (now, now))
    os.utime(b / "state.safetensors", (now - 60, now - 60))
    assert latest_run_dir(tmp_path, "segmenter") == a  # the most recently saved state wins
    assert latest_run_dir(tmp_path, "generator") is None  # other stages are separate


def test_run_folders_match_the_stage_exactly(tmp_path):
    """`inversion` never resumes an `inversion-baseline-...` run (one stage name is a prefix of the other)."""
    base = new_run_dir(tmp_path, "inversion-baseline")
    (base / "state.safetensors").write_bytes(b"b")
    assert latest_run_dir(tmp_path, "inversion") is None
    assert latest_run_dir(tmp_path, "inversion-baseline") == base
    own = new_run_dir(tmp_path, "inversion")
    (own / "state.safetensors").write_bytes(b"p")
    assert latest_run_dir(tmp_path, "inversion") == own
