"""The stderr console for humans (progress, messages); stdout stays machine-readable. Imports no torch, so
`bgedit --help` and `bgedit data synth` stay fast; trainers take it from `bgedit_cli.runtime`."""

from __future__ import annotations

from rich.console import Console

err_console = Console(stderr=True, highlight=False)
