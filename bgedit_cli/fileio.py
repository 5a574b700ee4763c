"""Output files: refuse to overwrite without `--force`, write to a temporary file and rename it into place."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bgedit_cli.errors import OutputExistsError


def check_writable(path: Path, force: bool) -> None:
    """Refuse to overwrite `path` without `force`; make sure its folder can be created."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path} already exists; pass --force to overwrite it.")
    if path.is_dir():
        raise OutputExistsError(f"{path} is a directory; give a file name.")


class atomic_output:
    """`with atomic_output(path) as tmp:` write to `tmp`; on success it is renamed to `path`, else removed."""

    def __init__(self, path: Path, force: bool = True) -> None:
        self.path = Path(path)
        self.force = force

    def __enter__(self) -> Path:
        check_writable(self.path, self.force)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual mode
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)
