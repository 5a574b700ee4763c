"""User-facing errors. Each message says what went wrong and what to do next.

The CLI turns any `BgeditError` into one `Error: ...` line on stderr and exit code 1.
"""

from __future__ import annotations


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (whitespace runs, newlines included, become one space)."""
    return " ".join(str(exc).split())


class BgeditError(Exception):
    """An error caused by the user's input or environment, with a message meant for them."""

    exit_code = 1


class CheckpointError(BgeditError):
    """A weight file is missing, corrupt, of the wrong kind or does not match its network."""


class InputError(BgeditError):
    """An input file or value (image, latent array, seed list, ...) cannot be used."""


class OutputExistsError(BgeditError):
    """An output would overwrite an existing file and --force was not given."""


class ConfigError(BgeditError):
    """A config has unknown keys, missing keys or values out of range."""
