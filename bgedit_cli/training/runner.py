"""One stage runner for every `bgedit train <stage>`: run folder, log, resume, cadence, stop, rank-0 writing.

A stage module supplies only what is its own (stylegan3 keeps one loop and puts each model's maths behind
`Loss.accumulate_gradients`; here a stage object plays that part):

    run = StageRun.open("segmenter", opts.bundle, device=opts.device, resume=opts.resume)   # processes, state
    cfg = SegmenterTrainConfig.resolve(opts.preset, opts.overrides, flags, run.saved_settings)  # configs.py
    stage = SegmenterStage(cfg, opts, run)   # data, networks, optimizer: the stage's own code
    return run.fit(stage, cfg, opts)

`fit` creates the run folder `BUNDLE/runs/<stage>-<time>/` (rank 0), writes the JSON-lines log, restores the
saved state (networks, optimizers, every rank's RNG, data position, last metrics), loops over the steps with
the stop request (Ctrl-C, time limit: one collective for both), evaluates and snapshots on cadence and at the
end, and writes `state.safetensors` (everything `--resume` needs) with each snapshot. The loop draws no
random numbers of its own, so N steps straight and N/2 + N/2 resumed give the same weights on CPU.

How a new stage is added: docs/architecture.md.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Iterator, Protocol

import torch
import torch.distributed as dist

from bgedit_cli.bundle import BUNDLE_FILES, bundle_file, latest_run_dir, new_run_dir
from bgedit_cli.checkpoint import save_network
from bgedit_cli.distributed import join
from bgedit_cli.errors import BgeditError, InputError
from bgedit_cli.fileio import check_writable
from bgedit_cli.runtime import resolve_precision
from bgedit_cli.training.common import (Dist, RunLog, StopRequest, TrainProgress, any_ranks, resumable_batches,
                                        split_batch)
from bgedit_cli.training.configs import StageConfig
from bgedit_cli.training.state import gather_rng_states, load_state, restore_rng_states, save_state

THROUGHPUT_WINDOW_S = 30  # images/s goes into the log over windows of at least this many seconds


# ----------------------------------------------------------------------------------------------------------
# What a stage supplies.


class Stage(Protocol):
    """A training stage as the runner drives it. Attributes:

    - `name`: run folder prefix and snapshot name (`inversion-baseline`); `kind`: the bundle file's kind;
    - `resume_args`: what follows `bgedit train` to continue it (`inversion --variant baseline`);
    - `dataset`, `seed`: the training data the runner streams in resumable global batches of `cfg.batch_size`.
    """

    name: str
    kind: str
    resume_args: str
    dataset: torch.utils.data.Dataset

    def state_dict(self) -> dict[str, Any]:
        """Networks, optimizers and the stage's own resumable values (the runner adds step, RNG, data...)."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def train_step(self, step: int, batches: "DataStream") -> tuple[dict[str, Any], dict[str, float], int]:
        """One optimizer step (`step` counts from 0), drawing its batch(es) from `batches`. Returns the log
        record (without step/epoch), the scalars for the progress bar and the number of images it used."""

    def evaluate(self, step: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Called on every rank at the evaluation cadence and at the end. Returns the log record and the
        metrics kept as the run's latest (in the state, the provenance and the summary; None: keep the last)."""

    def snapshot_network(self) -> torch.nn.Module:
        """The network written to the bundle and to `RUN/snapshots/<name>-<step>.safetensors`."""

    def command(self) -> str:
        """The command line that reproduces the run's settings."""

    def begin(self, run_dir: Path | None, resumed: bool) -> None:
        """Called on every rank once the run folder exists (None on ranks other than 0)."""

    def provenance(self, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
        """What the bundle file records beyond the runner's command, data, steps, run and minutes."""

    def start_record(self) -> dict[str, Any]:
        """Fields of the log's `start`/`resume` record."""

    def summary(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Fields of the summary that the command prints."""


@dataclasses.dataclass
class StageOptions:
    """What every `bgedit train <stage>` command gives: paths, bookkeeping, and `overrides` of the stage
    config's fields (None = the preset's, or with `resume` the run's own). Stages subclass it for their own."""

    data: Path
    bundle: Path
    preset: str | None = None
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    resume: bool = False
    device: str = "auto"
    precision: str = "auto"
    workers: int | None = 0
    eval_every: int | None = None
    snapshot_every: int | None = None
    time_limit_min: float | None = None
    force: bool = False
    progress: bool = True


class StageBase:
    """Defaults for a stage's bookkeeping members: the network written is `self.net`, the command is the
    config's, the run folder arrives in `begin`."""

    net: torch.nn.Module
    PRECISIONS = ("auto", "fp32", "bf16")

    def __init__(self, cfg: StageConfig, opts: StageOptions, run: "StageRun") -> None:
        self.cfg, self.opts, self.d, self.device = cfg, opts, run.d, run.device
        self.precision = resolve_precision(opts.precision, run.device, self.PRECISIONS)
        self.run_dir: Path | None = None

    def begin(self, run_dir: Path | None, resumed: bool) -> None:
        self.run_dir = run_dir

    def snapshot_network(self) -> torch.nn.Module:
        return self.net

    def command(self) -> str:
        return self.cfg.command(Path(self.opts.data).resolve(), Path(self.opts.bundle).resolve(),
                                self.d.world_size)


class TrainingInterrupted(BgeditError):
    """Raised after Ctrl-C once the resumable state has been saved."""

    exit_code = 130


class DataStream:
    """Endless resumable global batches: `next()` returns this rank's share; `epoch` and `position` (global
    batches of the epoch consumed, the last one included) go into the state."""

    def __init__(self, dataset, batch_size: int, *, seed: int, epoch: int, position: int, workers: int, d: Dist,
                 pin_memory: bool) -> None:
        self.epoch, self.position = epoch, position
        self._it: Iterator = resumable_batches(dataset, batch_size, seed=seed, epoch=epoch, position=position,
                                               workers=workers, d=d, pin_memory=pin_memory)

    def next(self) -> Any:
        self.epoch, self.position, batch = next(self._it)
        return batch


# ----------------------------------------------------------------------------------------------------------
# The runner.


class StageRun:
    """A run of one stage in one bundle. `open` joins the processes and, with `--resume`, finds and reads the
    stage's latest state (rank 0 decides the folder); `fit` trains."""

    def __init__(self, name: str, bundle: Path, d: Dist, device: torch.device, run_dir: Path | None,
                 state: dict[str, Any] | None) -> None:
        self.name, self.bundle, self.d, self.device = name, bundle, d, device
        self.run_dir, self.state = run_dir, state

    @classmethod
    def open(cls, name: str, bundle: Path, *, device: str, resume: bool) -> "StageRun":
        bundle = Path(bundle).expanduser()
        d, dev = join(device)
        run_dir = state = None
        if resume:
            run_dir = _shared_run_dir(bundle, name, d, resume=True)
            state = load_state(run_dir / "state.safetensors")
        return cls(name, bundle, d, dev, run_dir, state)

    @property
    def saved_settings(self) -> dict[str, Any] | None:
        return self.state["settings"] if self.state is not None else None

    @property
    def start_step(self) -> int:
        return self.state["step"] if self.state is not None else 0

    def fit(self, stage: Stage, cfg: StageConfig, opts: StageOptions, *, out_path: Path | None = None,
            **override: Any) -> dict[str, Any]:
        """Train `stage` to `cfg.steps` (or `opts.time_limit_min`) and return the summary. The bundle file is
        `out_path` (default: the stage's own); `override` replaces fields of `opts` (e.g. `eval_every`).
        `eval_every` and `snapshot_every` default to the resumed run's own, else a tenth of the steps; 0 means
        only at the end."""
        d, state = self.d, self.state
        opts = dataclasses.replace(opts, **override)
        data, force, workers, progress = opts.data, opts.force, opts.workers or 0, opts.progress
        eval_every, snapshot_every, time_limit_min = opts.eval_every, opts.snapshot_every, opts.time_limit_min
        out_path = out_path or bundle_file(self.bundle, stage.name, must_exist=False)
        # Cadence: as given, else the resumed run's own, else a tenth of the steps.
        every, saved = max(1, cfg.steps // 10), (state or {}).get("cadence", {})
        eval_every = saved.get("eval_every", every) if eval_every is None else eval_every
        snapshot_every = saved.get("snapshot_every", every) if snapshot_every is None else snapshot_every

        # Output paths: refuse an existing file before any work; a new run folder (rank 0 names it).
        split_batch(cfg.batch_size, d)  # the global batch must split evenly over the processes
        if state is None:
            if d.is_main and not force:
                check_writable(out_path, False)
            self.run_dir = _shared_run_dir(self.bundle, self.name, d, resume=False)
        run_dir = self.run_dir
        stage.begin(run_dir if d.is_main else None, state is not None)
        log = RunLog(run_dir / "log.jsonl" if d.is_main else None,
                     start_time=time.time() - (state["wall_seconds"] if state else 0.0))

        # Resume.
        step, epoch, position, metrics = 0, 0, 0, {}
        if state is not None:
            stage.load_state_dict(state)
            step, epoch, position = state["step"], state["data"]["epoch"], state["data"]["position"]
            metrics = state.get("metrics", state.get("swd")) or {}
            restore_rng_states(state["rng"], d, fallback_seed=cfg.seed + step)
        log.write(event="resume" if state else "start", step=step, run=str(run_dir), command=stage.command(),
                  settings=cfg.to_dict(), world_size=d.world_size, device=str(self.device),
                  threads=torch.get_num_threads(), train_images=len(stage.dataset), eval_every=eval_every,
                  snapshot_every=snapshot_every, time_limit_min=time_limit_min, **stage.start_record())

        def provenance() -> dict[str, Any]:
            return {"command": stage.command(), "data": str(Path(data).resolve()), "steps": step,
                    "preset": cfg.preset, "settings": cfg.to_dict(), "run": str(run_dir),
                    "wall_minutes": round((time.time() - log.t0) / 60, 2), "world_size": d.world_size,
                    **stage.provenance(step, metrics)}

        def save_resumable() -> None:
            rngs = gather_rng_states(d)  # collective
            if d.is_main:
                save_state(run_dir / "state.safetensors", {
                    **stage.state_dict(), "rng": rngs, "step": step, "data": {"epoch": epoch, "position": position},
                    "metrics": metrics, "settings": cfg.to_dict(), "wall_seconds": time.time() - log.t0,
                    "cadence": {"eval_every": eval_every, "snapshot_every": snapshot_every}})

        def evaluate() -> None:
            nonlocal metrics
            record, new_metrics = stage.evaluate(step)
            if new_metrics is not None:
                metrics = new_metrics
            if record:
                log.write(step=step, minutes=round((time.time() - log.t0) / 60, 3), **record)

        def snapshot() -> None:
            if d.is_main:
                net, prov = stage.snapshot_network(), provenance()
                save_network(out_path, net, kind=stage.kind, provenance=prov, force=True)
                save_network(run_dir / "snapshots" / f"{stage.name}-{step:06d}.safetensors", net, kind=stage.kind,
                             provenance=prov, force=True)
            save_resumable()

        # Train.
        batches = DataStream(stage.dataset, cfg.batch_size, seed=cfg.seed, epoch=epoch, position=position,
                             workers=workers, d=d, pin_memory=self.device.type == "cuda")
        t_start = t_rate = time.time()
        n_rate, stopped_by_time, done_at = 0, False, -1
        with StopRequest() as stop, TrainProgress(cfg.steps, step, description=stage.name,
                                                  enabled=progress and d.is_main) as bar:
            while step < cfg.steps:
                over_time = time_limit_min is not None and time.time() - t_start > time_limit_min * 60
                interrupted, over_time = any_ranks([stop.requested, over_time], d)  # one collective for both
                if interrupted:
                    save_resumable()
                    raise TrainingInterrupted(
                        f"interrupted at step {step}/{cfg.steps}; the state is saved in {run_dir}. Continue with "
                        f"`bgedit train {stage.resume_args} --data {data} --model {self.bundle} --resume`.")
                if over_time:
                    stopped_by_time = True
                    break
                record, scalars, images = stage.train_step(step, batches)
                step += 1
                epoch, position = batches.epoch, batches.position

                # Log (rank 0's record; throughput over windows of >= 30 s).
                n_rate += images * d.world_size
                now = time.time()
                if now - t_rate >= THROUGHPUT_WINDOW_S or step == cfg.steps:
                    record["images_per_s"] = round(n_rate / max(now - t_rate, 1e-9), 3)
                    t_rate, n_rate = now, 0
                log.write(step=step, epoch=epoch, **record)
                bar.update(1, images * d.world_size, **scalars)

                # Evaluate and snapshot.
                last = step == cfg.steps
                if last or (eval_every > 0 and step % eval_every == 0):
                    evaluate()
                if last or (snapshot_every > 0 and step % snapshot_every == 0):
                    snapshot()
                    done_at = step

        # The end: stopped by the time limit, or a resumed run that had already finished.
        if done_at != step:
            evaluate()
            snapshot()
        wall = time.time() - log.t0
        log.write(step=step, event="done", minutes=round(wall / 60, 3), stopped_by_time=stopped_by_time)
        return {**stage.summary(metrics), "is_main": d.is_main, "model": str(out_path), "run": str(run_dir),
                "steps": step, "total_steps": cfg.steps, "wall_seconds": round(wall, 2),
                "train_seconds": round(time.time() - t_start, 2), "stopped_by_time": stopped_by_time,
                "bundle_files": sorted(p for p in BUNDLE_FILES.values() if (self.bundle / p).is_file())}


def _shared_run_dir(bundle: Path, name: str, d: Dist, *, resume: bool) -> Path:
    """The latest run of exactly `name` with a saved state (resume), or a new run folder. Rank 0 decides;
    the other ranks get the same path (torchrun ranks share a filesystem)."""
    path: Path | None = None
    if d.is_main:
        if resume:
            path = latest_run_dir(bundle, name)
            if path is None:
                raise InputError(f"--resume: no {name} run with a saved state under {Path(bundle) / 'runs'}; "
                                 "start without --resume.")
        else:
            path = new_run_dir(bundle, name)
    if d.enabled:
        box = [str(path) if path else None]
        dist.broadcast_object_list(box, src=0)
        path = Path(box[0])
    return path
