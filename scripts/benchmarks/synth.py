"""Synthetic scenes: `bgedit data synth` throughput at 256 px with 2 worker processes.

End to end (sampling, rendering, PNG encoding, writing images + annotations + metadata) into a temp folder.
`scenes_per_s` is wall-clock and depends on what else the machine is running; `cpu_ms_per_scene` (CPU time of
the parent and the workers, per scene) does not, so 2000 / cpu_ms_per_scene is the rate on two idle cores.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path


def _cpu_s() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run(quick: bool = False) -> list[dict]:
    from bgedit_cli.data.synth import synthesize, warm_up

    resolution, workers = 256, 2
    num = 200 if quick else 2000
    warm_up()  # built once per process (about 0.3 s), before the workers fork
    with tempfile.TemporaryDirectory(prefix="bgedit-bench-synth-") as tmp:
        cpu0, t0 = _cpu_s(), time.perf_counter()
        synthesize(Path(tmp) / "out", num=num, resolution=resolution, seed=0, mixing_pairs=0, workers=workers)
        seconds, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
    return [{"bench": "synth", "resolution": resolution, "scenes": num, "workers": workers,
             "scenes_per_s": round(num / seconds, 1), "seconds": round(seconds, 2),
             "cpu_ms_per_scene": round(1000 * cpu / num, 2)}]
