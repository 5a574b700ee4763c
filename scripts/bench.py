"""Benchmarks: `python scripts/bench.py [--only generator,synth,...] [--quick] [--json FILE] [--peer-rosinality DIR]`.

Prints one table row per measurement and the machine/torch versions; figures go into docs/benchmarks.md.
Sections live in scripts/benchmarks/<name>.py (each has `run(quick) -> list[dict]`; generator also takes
`peer_rosinality`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SECTIONS = ["generator", "synth", "train", "invert", "text_edit"]


def machine() -> dict:
    """The header line: versions, the CPU model and the flags that decide its speed per precision, and what
    `--precision auto` picks on it (with the measured bf16/fp32 convolution speed ratio)."""
    import torch

    from bgedit_cli.runtime import cpu_bf16_status, cpu_flags, cpu_model

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu": cpu_model(),
            "cpu_flags": cpu_flags(), "cpu_bf16": cpu_bf16_status(), "cpu_threads": torch.get_num_threads(),
            "cores": os.cpu_count()}
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    ap.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    ap.add_argument("--json", type=Path, help="also write all rows + machine info as JSON")
    ap.add_argument("--peer-rosinality", type=Path, metavar="DIR",
                    help="a checkout of rosinality/stylegan2-pytorch: the generator section adds a peer row, its "
                         "Generator (CPU path, nothing compiled) on the same paper-256 weights, next to our fp32 "
                         "rows (see scripts/benchmarks/peer.py)")
    args = ap.parse_args()
    section_kwargs: dict[str, dict] = {}
    if args.peer_rosinality is not None:
        from benchmarks.peer import PeerError, load_rosinality

        if "generator" not in args.only.split(","):
            ap.error("--peer-rosinality adds rows to the generator section; include it in --only")
        try:
            load_rosinality(args.peer_rosinality)  # fail now, not after minutes of other rows
            section_kwargs["generator"] = {"peer_rosinality": args.peer_rosinality}
        except PeerError as exc:
            ap.error(str(exc))
    info = machine()
    print("# " + json.dumps(info))
    rows = []
    for name in args.only.split(","):
        try:
            mod = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError:
            print(f"# section {name}: not available", file=sys.stderr)
            continue
        t = time.time()
        for row in mod.run(quick=args.quick, **section_kwargs.get(name, {})):
            print(json.dumps(row))
            rows.append(row)
        print(f"# section {name}: {time.time() - t:.1f} s", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
