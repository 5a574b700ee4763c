"""Model bundles: a folder holding one `<kind>.safetensors` per network plus `runs/<stage>-<time>/` folders.

    BUNDLE/generator.safetensors      BUNDLE/segmenter.safetensors     BUNDLE/inversion.safetensors
    BUNDLE/inversion-baseline.safetensors   BUNDLE/clip.safetensors   BUNDLE/text.safetensors
    BUNDLE/runs/segmenter-20261127-101500/{log.jsonl, state.safetensors, snapshots/, samples/}

Commands take `--model DIR`; the default is `$BGEDIT_HOME/models/default` with `BGEDIT_HOME` defaulting to
`~/.cache/bgedit`. Auxiliary pretrained weights live in `$BGEDIT_HOME/weights/`.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from bgedit_cli.errors import CheckpointError

BUNDLE_FILES = {
    "generator": "generator.safetensors",
    "segmenter": "segmenter.safetensors",
    "inversion": "inversion.safetensors",
    "inversion-baseline": "inversion-baseline.safetensors",
    "clip": "clip.safetensors",
    "text": "text.safetensors",
}


def bgedit_home() -> Path:
    return Path(os.environ.get("BGEDIT_HOME") or Path.home() / ".cache" / "bgedit").expanduser()


def default_bundle() -> Path:
    return bgedit_home() / "models" / "default"


def weights_dir() -> Path:
    return bgedit_home() / "weights"


def resolve_bundle(model: Path | None) -> Path:
    return Path(model).expanduser() if model is not None else default_bundle()


def bundle_file(bundle: Path, name: str, *, must_exist: bool = True, override: Path | None = None) -> Path:
    """Path of network `name` in the bundle (or `override`); a missing file is a clear error."""
    path = Path(override) if override is not None else Path(bundle) / BUNDLE_FILES[name]
    if must_exist and not path.is_file() and override is None and not Path(bundle).exists() \
            and Path(bundle) == default_bundle():
        raise CheckpointError(f"{bundle}: no default model bundle. Install one with `bgedit bundle install DIR` "
                              "(`make demo` installs the demo bundle, models/demo) or pass --model DIR.")
    if must_exist and not path.is_file():
        stage = name.split("-")[0]
        raise CheckpointError(
            f"{path}: no {name} network. Train it with `bgedit train {stage} --model {bundle}`"
            + (" or import one with `bgedit convert`" if name == "generator" else "")
            + " (or pass --model to another bundle)."
        )
    return path


def new_run_dir(bundle: Path, stage: str) -> Path:
    """Create `BUNDLE/runs/<stage>-<YYYYmmdd-HHMMSS>/` (suffixing -2, -3, ... if taken)."""
    base = Path(bundle) / "runs" / f"{stage}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    path.mkdir(parents=True)
    return path


def latest_run_dir(bundle: Path, stage: str) -> Path | None:
    """The newest run folder of exactly `stage` (`<stage>-<YYYYmmdd-HHMMSS>[-k]`, so `inversion` never takes an
    `inversion-baseline-...` run) that holds a resumable state, or None."""
    pattern = re.compile(rf"^{re.escape(stage)}-\d{{8}}-\d{{6}}(-\d+)?$")
    runs = sorted(
        (p for p in (Path(bundle) / "runs").glob(f"{stage}-*")
         if pattern.match(p.name) and (p / "state.safetensors").is_file()),
        key=lambda p: (p / "state.safetensors").stat().st_mtime,
    )
    return runs[-1] if runs else None
