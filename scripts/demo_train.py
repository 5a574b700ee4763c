"""Train the demo bundle from nothing, stage by stage, resumably (`make demo-train`).

    python scripts/demo_train.py [--work DIR] [--preset demo|tiny] [--stages data,segmenter,...] [--time-limit MIN]

Stages, in order (each a `bgedit` command, echoed so it can be copied):
  data        bgedit data synth (64 px scenes; the validation split and its mixing/text ground truth are never
              trained on)
  segmenter   bgedit train segmenter
  generator   bgedit train generator (the long one: hours on 2 CPU cores)
  inversion   bgedit train inversion --variant proposed (encoders, then hypernetworks)
  inversion-hypernets
              bgedit train inversion --init-from BUNDLE/inversion.safetensors: the hypernetworks trained longer,
              encoders frozen (in WORK/hypernets/; its file then replaces BUNDLE/inversion.safetensors)
  inversion-baseline
              bgedit train inversion --variant baseline
  clip        bgedit train clip
  text        bgedit train text (six style names + content prompts)
A stage whose bundle file exists and that `WORK/progress.json` marks finished is skipped; a stage with a run
folder holding a saved state continues it with --resume; `--time-limit` stops a stage early (resumable: run the
script again). `WORK/progress.json` records each stage's command, wall minutes, CPU model and torch version.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROMPTS = "day,sunset,night,snow,fog,autumn,ocean,a lake,a village,mountains"
# Arguments of each stage beyond --data/--model/--preset/--steps: the settings the shipped models/demo was
# trained with (models/demo/MODEL_CARD.md), measured in docs/training-*.md.
STAGE_ARGS = {
    "demo": {
        "segmenter": ["--batch-size", "8", "--lr", "0.01", "--class-balance", "0.5", "--progressive", "0.5",
                      "--seed", "0"],
        "generator": ["--batch-size", "4", "--lr", "0.0025", "--r1-gamma", "0.1", "--pl-weight", "0",
                      "--augment", "none", "--seed", "0", "--snapshot-every", "2000"],
        "inversion": ["--batch-size", "8", "--lr", "0.0005", "--seed", "0", "--schedule", "phased",
                      "--encoder-fraction", "0.7", "--seg-layers", "2", "--eval-every", "500",
                      "--snapshot-every", "500"],
        "clip": ["--batch-size", "64", "--lr", "0.0005", "--seed", "0"],
        "inversion-hypernets": ["--batch-size", "8", "--lr", "0.0003", "--seed", "1", "--schedule", "phased",
                                "--encoder-fraction", "0", "--seg-layers", "2", "--eval-every", "500",
                                "--snapshot-every", "250"],
        "text": ["--prompts", PROMPTS, "--latent-lambda", "0.8", "--layout-lambda", "0.1", "--seed", "0"],
    },
    "tiny": {"inversion-hypernets": ["--schedule", "phased", "--encoder-fraction", "0"], "text": ["--prompts", PROMPTS]},
}
# (stage, bundle file, arguments after `bgedit`), per preset; {data} and {bundle} are filled in.
PLANS = {
    "demo": {
        "data": ["data", "synth", "--out", "{data}", "--num", "40000", "--resolution", "64", "--seed", "0",
                 "--val-fraction", "0.025", "--mixing-pairs", "16"],
        "steps": {"segmenter": 4600, "generator": 40000, "inversion": 5000, "inversion-hypernets": 7000,
                  "inversion-baseline": 5000, "clip": 1800, "text": 3000},
    },
    "tiny": {
        "data": ["data", "synth", "--out", "{data}", "--num", "64", "--resolution", "32", "--seed", "0",
                 "--mixing-pairs", "4"],
        "steps": {"segmenter": 20, "generator": 20, "inversion": 10, "inversion-hypernets": 6,
                  "inversion-baseline": 10, "clip": 10, "text": 6},
    },
}
STAGES = ("data", "segmenter", "generator", "inversion", "inversion-hypernets", "inversion-baseline", "clip", "text")
FILES = {"segmenter": "segmenter.safetensors", "generator": "generator.safetensors",
         "inversion": "inversion.safetensors", "inversion-hypernets": "inversion.safetensors",
         "inversion-baseline": "inversion-baseline.safetensors", "clip": "clip.safetensors",
         "text": "text.safetensors"}
HYPERNETS = "hypernets"  # WORK/hypernets/: the bundle of the inversion-hypernets stage


def stage_bundle(stage: str, work: Path) -> Path:
    """Where a stage reads and writes its bundle files and runs."""
    return work / (HYPERNETS if stage == "inversion-hypernets" else "bundle")


def run_kind(stage: str) -> str:
    """The name of a stage's run folders (`runs/<kind>-<time>`)."""
    return "inversion" if stage == "inversion-hypernets" else stage


def stage_args(stage: str, preset: str, data: Path, bundle: Path) -> list[str]:
    steps = str(PLANS[preset]["steps"][stage])
    common = ["--data", str(data), "--model", str(bundle), "--preset", preset, "--steps", steps]
    extra = STAGE_ARGS[preset]
    if stage == "inversion-hypernets":  # `bundle` is WORK/hypernets; it starts from WORK/bundle's inversion
        first = stage_bundle("inversion", bundle.parent) / FILES["inversion"]
        return ["train", "inversion", *common, "--variant", "proposed", "--init-from", str(first),
                *extra.get(stage, [])]
    if stage.startswith("inversion"):
        variant = "baseline" if stage == "inversion-baseline" else "proposed"
        args = [a for a in extra.get("inversion", [])]
        if variant == "baseline" and "--seg-layers" in args:  # the baseline has no Seg Encoder
            i = args.index("--seg-layers")
            del args[i:i + 2]
        return ["train", "inversion", *common, "--variant", variant, *args]
    return ["train", stage, *common, *extra.get(stage, [])]


def has_state(bundle: Path, stage: str) -> bool:
    from bgedit_cli.bundle import latest_run_dir

    return latest_run_dir(bundle, stage) is not None


def run_bgedit(args: list[str]) -> tuple[int, str]:
    """Run `bgedit ARGS` in-process (one Python start-up for all stages); (exit code, stdout)."""
    from typer.testing import CliRunner

    from bgedit_cli.cli.app import app

    print("$ bgedit " + " ".join(shlex.quote(a) for a in args), flush=True)
    result = CliRunner().invoke(app, args)
    sys.stderr.write(result.stderr)
    return result.exit_code, result.stdout


def main() -> None:
    import torch

    from bgedit_cli.runtime import cpu_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "bgedit" / "demo-train")
    parser.add_argument("--preset", choices=sorted(PLANS), default="demo")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset, in the order above")
    parser.add_argument("--time-limit", type=float, default=None, help="minutes per stage (resumable)")
    args = parser.parse_args()

    work = args.work.expanduser()
    data, bundle = work / "data", work / "bundle"
    progress_path = work / "progress.json"
    work.mkdir(parents=True, exist_ok=True)
    progress = json.loads(progress_path.read_text()) if progress_path.is_file() else {}
    wanted = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(STAGES))
    if unknown:
        sys.exit(f"unknown stage(s): {', '.join(unknown)}; known: {', '.join(STAGES)}")

    for stage in (s for s in STAGES if s in wanted):
        entry = progress.get(stage, {})
        if stage == "data":
            if (data / "metadata.jsonl").is_file():
                print(f"[data] {data} exists; skipped")
                continue
            cmd = [a.format(data=data) for a in PLANS[args.preset]["data"]]
        else:
            where = stage_bundle(stage, work)
            if entry.get("finished") and (where / FILES[stage]).is_file():
                print(f"[{stage}] finished ({entry.get('minutes', 0):.1f} min); skipped")
                continue
            if where != bundle:  # the stage's own bundle shares the generator
                where.mkdir(parents=True, exist_ok=True)
                link = where / FILES["generator"]
                if not link.exists():
                    link.symlink_to((bundle / FILES["generator"]).resolve())
            cmd = stage_args(stage, args.preset, data, where)
            if has_state(where, run_kind(stage)):
                cmd.append("--resume")
            elif (where / FILES[stage]).is_file():
                cmd.append("--force")
            if args.time_limit is not None:
                cmd += ["--time-limit", str(args.time_limit)]
        t = time.time()
        code, out = run_bgedit(cmd + ["--json", "--quiet"] if stage != "data" else cmd)
        minutes = entry.get("minutes", 0.0) + (time.time() - t) / 60
        finished, summary = code == 0, {}
        if stage != "data" and finished:
            summary = json.loads(out)
            finished = not summary.get("stopped_by_time", False)
            scores = summary.get("val") or summary.get("swd") or {}
            print(f"[{stage}] step {summary['steps']}/{summary['total_steps']}: "
                  + ", ".join(f"{k} {v:.4g}" for k, v in scores.items() if isinstance(v, (int, float))))
        progress[stage] = {"command": "bgedit " + " ".join(shlex.quote(a) for a in cmd), "minutes": round(minutes, 2),
                           "finished": finished, "exit_code": code, "steps": summary.get("steps"), "cpu": cpu_model(),
                           "torch": torch.__version__, "python": platform.python_version()}
        progress_path.write_text(json.dumps(progress, indent=2))
        print(f"[{stage}] {'finished' if finished else 'stopped'} after {minutes:.1f} min in all", flush=True)
        if code != 0:
            sys.exit(f"stage {stage} failed (exit {code}); fix it and run the script again to continue")
        if not finished:
            print("Stopped by the time limit: run the script again to continue.")
            return
        if stage == "inversion-hypernets":  # the longer-trained hypernetworks become the bundle's inversion
            tmp = bundle / (FILES["inversion"] + ".tmp")
            shutil.copyfile(where / FILES["inversion"], tmp)
            tmp.replace(bundle / FILES["inversion"])
            print(f"[{stage}] copied to {bundle / FILES['inversion']}")
    print(f"The bundle is in {bundle}; progress and timings in {progress_path}.")


if __name__ == "__main__":
    main()
