"""The shell pipeline in README.md (between `<!-- pipeline-test -->` markers) runs as written: `bash` in a
subprocess, the real `bgedit` console script on PATH, `jq`, against a tiny bundle installed as the default."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import REPO

BEGIN, END = "<!-- pipeline-test -->", "<!-- /pipeline-test -->"
PROMPTS = "snowy night,ocean"


def readme_block() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1, "README.md must hold one marked pipeline block"
    block = text[text.index(BEGIN) + len(BEGIN):text.index(END)]
    match = re.fullmatch(r"\s*```bash\n(.*?)```\s*", block, re.S)
    assert match, "the marked block must be one ```bash code block"
    return match.group(1)


def test_the_block_uses_real_commands(cli):
    """Cheap check (runs by default): every `bgedit X` in the block is a command whose --help works."""
    block = readme_block()
    code = "\n".join(line for line in block.splitlines() if not line.lstrip().startswith("#"))
    commands = set(re.findall(r"\bbgedit ([a-z][a-z-]*)", code))
    assert {"invert", "mix-style", "text-edit", "mix-content"} <= commands
    for name in commands:
        result = cli([name, "--help"])
        assert result.exit_code == 0, (name, result.stderr)
    assert "xargs -0 bgedit" in block and "jq" in block


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """$BGEDIT_HOME whose default bundle is tiny: random generator, inversion, segmenter and CLIP, and a text
    model trained for a few steps on the README's prompt."""
    from typer.testing import CliRunner

    from bgedit_cli.checkpoint import file_sha256, save_network
    from bgedit_cli.cli.app import app
    from bgedit_cli.data.synth import synthesize
    from bgedit_cli.nn.clip_model import ClipModel, clip_config
    from bgedit_cli.nn.inversion import build_inversion
    from bgedit_cli.nn.segmenter import Segmenter, segmenter_preset
    from bgedit_cli.nn.stylegan2 import GENERATOR_PRESETS, Generator

    root = tmp_path_factory.mktemp("readme")
    data, bundle = root / "data", root / "bundle"
    synthesize(data, num=12, resolution=16, seed=0, val_fraction=0.25, mixing_pairs=0, workers=1, force=True)
    torch.manual_seed(0)
    g = Generator(GENERATOR_PRESETS["tiny"])
    g.update_w_avg(500)
    save_network(bundle / "generator.safetensors", g, kind="generator")
    save_network(bundle / "inversion.safetensors",
                 build_inversion("proposed", "tiny", g, file_sha256(bundle / "generator.safetensors")),
                 kind="inversion")
    save_network(bundle / "segmenter.safetensors", Segmenter(segmenter_preset("tiny")), kind="segmenter")
    save_network(bundle / "clip.safetensors", ClipModel(clip_config("tiny", image_resolution=16)), kind="clip")
    runner = CliRunner()
    result = runner.invoke(app, ["train", "text", "--data", str(data), "--model", str(bundle), "--preset", "tiny",
                                 "--device", "cpu", "--quiet", "--prompts", PROMPTS, "--num-latents", "4",
                                 "--batch-size", "2", "--steps", "2"])
    assert result.exit_code == 0, (result.output, result.exception)
    home = root / "home"
    result = runner.invoke(app, ["bundle", "install", str(bundle), "--quiet"], env={"BGEDIT_HOME": str(home)})
    assert result.exit_code == 0, (result.stderr, result.exception)
    # The user's pictures: PNGs in nested folders (the block finds them with `find`).
    scenes = root / "work" / "scenes"
    for i, src in enumerate(sorted((data / "images" / "training").glob("*.png"))[:3]):
        dst = scenes / ("" if i == 0 else f"sub{i}") / f"scene{i}.png"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
    return home


@pytest.mark.slow  # five bgedit processes at a few seconds of imports each
def test_readme_pipeline_runs_as_written(home):
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed (apt-get install jq); the README pipeline uses it")
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "bgedit").is_file():
        pytest.skip(f"no bgedit console script next to {sys.executable} (pip install -e . first)")
    work = home.parent / "work"
    env = {**os.environ, "BGEDIT_HOME": str(home), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "OMP_NUM_THREADS": "1", "BGEDIT_CPU_BF16": "0"}
    assert shutil.which("bgedit", path=env["PATH"]) == str(bin_dir / "bgedit")
    proc = subprocess.run(["bash", "-e", "-u", "-o", "pipefail", "-c", readme_block()], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr

    latents = (work / "latents.txt").read_text().split()
    assert sorted(Path(p).name for p in latents) == [f"scene{i}.latent.safetensors" for i in range(3)]
    assert all((work / p).is_file() for p in latents)
    assert sorted(p.name for p in (work / "inv").glob("*.seg.png")) == [f"scene{i}.seg.png" for i in range(3)]
    for name in ("mixed.png", "relaid.png", "edits/mixed.snowy-night.png"):
        assert Image.open(work / name).size == (16, 16), name
    assert (work / "mixed.latent.safetensors").is_file()
    assert proc.stdout.split() == ["edits/mixed.snowy-night.png"]  # what jq printed: the text edit's output
