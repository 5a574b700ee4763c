"""Every `bgedit ... --help` (the root, each group, each command) shows an `Example:` line; a mistyped command
name gets a suggestion."""

from __future__ import annotations

import pytest
import typer

from bgedit_cli.cli.app import app


def command_paths() -> list[tuple[str, ...]]:
    """The path of every command and group under the root, found by walking the app (so new ones are covered)."""
    root = typer.main.get_command(app)
    paths: list[tuple[str, ...]] = []

    def walk(cmd, path: tuple[str, ...]) -> None:
        paths.append(path)
        if hasattr(cmd, "commands"):  # a group (typer vendors click: no click import)
            for name, sub in cmd.commands.items():
                if not sub.hidden:
                    walk(sub, path + (name,))

    walk(root, ())
    return paths


def test_the_walk_finds_every_command():
    paths = {" ".join(p) for p in command_paths()}
    assert {"", "bundle", "bundle install", "bundle show", "train", "train text", "seg stats", "data synth",
            "evaluate", "generate"} <= paths
    assert len(paths) >= 24


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "bgedit")
def test_help_shows_an_example(cli, path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # no wrapping inside a command line
    result = cli([*path, "--help"])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    lines = [line.strip(" │") for line in result.stdout.splitlines() if "Example:" in line]
    assert lines, f"`bgedit {' '.join(path)} --help` has no Example: line"
    # The example is a real command line of this command (or, for the root, of any command).
    assert any(f"bgedit {' '.join(path)}".strip() in line for line in lines), lines


def test_a_mistyped_command_gets_a_suggestion(cli):
    result = cli(["genrate", "--seeds", "0"])
    assert result.exit_code == 2
    assert "No such command 'genrate'" in result.stderr and "Did you mean 'generate'?" in result.stderr
    result = cli(["train", "segmentor"])
    assert result.exit_code == 2 and "Did you mean 'segmenter'" in result.stderr
