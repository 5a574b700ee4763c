"""The offline demo (`make demo`): runs the main jobs end to end and writes everything under out/demo/.

Each step is a `bgedit` command run in-process (one Python start-up for the whole demo); the exact commands
are echoed so they can be copied into a shell.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
OUT = REPO / "out" / "demo"


def bgedit(*args: object) -> None:
    from typer.testing import CliRunner

    from bgedit_cli.cli.app import app

    argv = [str(a) for a in args]
    print("$ bgedit " + " ".join(shlex.quote(a) for a in argv), flush=True)
    t = time.time()
    res = CliRunner().invoke(app, argv)
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    if res.exit_code != 0:
        sys.exit(f"demo step failed (exit {res.exit_code})")
    print(f"  ({time.time() - t:.1f} s)", flush=True)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    # 1. Import public-format StyleGAN2 checkpoints and sample them.
    if FIXTURES.is_dir():
        for name, src in [("rosinality", FIXTURES / "rosinality" / "rosinality_g_ema.pt"),
                          ("nvidia", FIXTURES / "nvidia" / "network-snapshot-000000.pkl")]:
            ckpt = OUT / f"{name}.safetensors"
            bgedit("convert", src, ckpt, "--force")
            bgedit("info", ckpt)
            bgedit("generate", ckpt, "--seeds", "0-7", "--truncation", "0.7", "--out", OUT / f"{name}-samples",
                   "--force")
    else:
        print(f"(skipping the import step: no fixtures at {FIXTURES})")

    # 2. The whole chain at test size (minutes on a CPU): synthetic scenes -> train every stage -> invert -> mix.
    #    Swap --preset tiny for demo (64 px) or paper-256 and raise --steps for real results (docs/).
    data, bundle, inv = OUT / "synth", OUT / "bundle", OUT / "inverted"
    bgedit("data", "synth", "--out", data, "--num", 64, "--resolution", 32, "--seed", 0, "--mixing-pairs", 4,
           "--force", "--quiet")
    bgedit("train", "segmenter", "--data", data, "--model", bundle, "--preset", "tiny", "--steps", 40,
           "--force", "--quiet")
    bgedit("train", "generator", "--data", data, "--model", bundle, "--preset", "tiny", "--steps", 40,
           "--force", "--quiet")
    bgedit("generate", bundle / "generator.safetensors", "--seeds", "0-7", "--out", OUT / "tiny-samples", "--force",
           "--quiet")
    bgedit("train", "inversion", "--data", data, "--model", bundle, "--preset", "tiny", "--steps", 20,
           "--force", "--quiet")
    scenes = sorted((data / "images" / "validation").glob("*.png"))[:2]
    bgedit("invert", *scenes, "--model", bundle, "--out", inv, "--save-seg", "--force", "--quiet")
    a, b = (inv / f"{p.stem}.latent.safetensors" for p in scenes)
    bgedit("mix-style", a, b, "--model", bundle, "--out", OUT / "mix-style.png", "--force", "--quiet")
    bgedit("mix-content", a, b, "--model", bundle, "--out", OUT / "mix-content.png", "--force", "--quiet")

    # 3. Text editing: a small CLIP on the scenes' captions, the mapper + Text Encoder, an edit from a prompt.
    bgedit("train", "clip", "--data", data, "--model", bundle, "--preset", "tiny", "--steps", 20, "--force",
           "--quiet")
    bgedit("train", "text", "--data", data, "--model", bundle, "--preset", "tiny", "--steps", 10,
           "--prompts", "snow,night,ocean", "--force", "--quiet")
    bgedit("text-edit", a, "snow", "--model", bundle, "--out-dir", OUT / "text-edit", "--samples", 2, "--force",
           "--quiet")
    bgedit("doctor")
    print(f"Demo outputs are in {OUT}")


if __name__ == "__main__":
    main()
