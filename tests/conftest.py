"""Shared test fixtures: paths to ../shared/fixtures, an in-process CLI runner."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"

torch.set_num_threads(1)  # tests run in parallel workers; one thread each is faster and deterministic
# `--precision auto` picks bf16 on CPUs where it is fast; the suite's reference values are fp32 everywhere
# (tests/test_precision.py checks the decision itself).
os.environ.setdefault("BGEDIT_CPU_BF16", "0")

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """No test talks to any address but this machine's loopback (downloads go to tests/local_http.py servers):
    a connection anywhere else fails the test at once instead of reaching the network."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(sock: socket.socket, address) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            raise AssertionError(f"a test tried to connect to {address!r}; tests may use 127.0.0.1 only")

    def connect(sock, address):
        check(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock, address):
        check(sock, address)
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"parity fixtures not found at {FIXTURES}")
    return FIXTURES


@pytest.fixture
def cli():
    """Run `bgedit ...` in-process: cli(["generate", ...]) -> click Result (exit_code, stdout, stderr)."""
    from bgedit_cli.cli.app import app

    runner = CliRunner()

    def run(args: list[str], **kwargs):
        return runner.invoke(app, [str(a) for a in args], **kwargs)

    return run


def assert_clean_error(result, *fragments: str) -> None:
    """Exit 1, exactly one `Error: ...` line on stderr naming `fragments`, no traceback."""
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])
