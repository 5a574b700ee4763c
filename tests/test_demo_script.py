"""scripts/demo.py runs each step through the function its echoed `bgedit` command calls, with the option values
the command-line parser gives that line (so the echoed line is a valid command and the defaults are the CLI's)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("bgedit_demo", REPO / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # scripts/ is not a package: loaded by path
    return module


def test_command_lines_parse_with_the_cli_defaults(demo):
    o = demo.parse_command_line(["text-edit", "a.latent.safetensors", "snowy night", "--out-dir", "t", "--force"])
    assert o["sources"] == [Path("a.latent.safetensors")] and o["prompt"] == "snowy night"
    assert (o["out_dir"], o["out"], o["force"]) == (Path("t"), None, True)
    assert (o["strength"], o["steps"], o["batch_size"], o["samples"], o["device"]) == (1.0, 5, 8, 1, "auto")
    o = demo.parse_command_line(["bundle", "install", "models/demo"])
    assert (o["src"], o["name"], o["force"]) == (Path("models/demo"), "default", False)
    o = demo.parse_command_line(["invert", "a.png", "b.png", "--out", "inv", "--save-seg"])
    assert o["images"] == [Path("a.png"), Path("b.png")] and list(o["seg"]) == [] and o["save_seg"]


def test_a_bad_command_line_is_refused(demo):
    with pytest.raises(Exception, match="valid integer"):
        demo.parse_command_line(["invert", "a.png", "--out", "x", "--steps", "many"])
    with pytest.raises(Exception, match="No such option"):
        demo.parse_command_line(["mix-style", "a", "b", "--out", "x", "--colour", "red"])
