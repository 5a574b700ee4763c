"""Distribution metrics, Table 1's FID and KID and our FD_CLIP and SWD (both modes): each fake set `ctx.fake[row]`
(the reconstructions of a variant, or the --fake folder) against the reference set `ctx.real` (the inputs, or
--real), both uint8 images.

Per image: Inception-v3 features (torch-fidelity's network and resize), CLIP image embeddings (the bundle's CLIP
or --clip) and Laplacian-pyramid patch descriptors (`metrics.swd`); the reference set's once for every fake set.
Then, on the gathered features: FID and KID x 1e3 (100 subsets of min(1000, N), seeded), FD_CLIP (labelled with
the CLIP's hash; comparable to published numbers only with OpenAI's ViT-B/32) and SWD x 1e3 (descriptors
normalised per set, the mean over pyramid levels). A metric without its weights, or with too few images, is an
unavailable `MetricResult` with the reason.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from bgedit_cli.errors import one_line
from bgedit_cli.metrics import features as fe
from bgedit_cli.metrics.distribution import MetricResult, fd_clip, fid_kid
from bgedit_cli.metrics.distribution import library_versions as metric_versions
from bgedit_cli.metrics.swd import SWD_SCALE, SWDSettings, image_descriptors, normalize_descriptors, \
    swd_from_descriptors, swd_resolutions
from bgedit_cli.pipelines.evaluation.context import Context
from bgedit_cli.pipelines.evaluation.scoring import sha256, to_unit
from bgedit_cli.pipelines.evaluation.section import MetricRows, Section, SectionResult
from bgedit_cli.weights import INCEPTION, MissingWeightsError

DISTRIBUTION = ("fid", "kid", "fd_clip", "swd")
KID_SUBSETS = 100


@dataclasses.dataclass
class DistributionResult(SectionResult):
    metrics: MetricRows  # Table 1's distribution cells per row

    def to_json(self) -> None:
        return None

    def metric_rows(self) -> MetricRows:
        return self.metrics


@dataclasses.dataclass
class Features:
    """Per-image features of one extractor: the reference set's and each fake set's (row -> features), or why
    there are none. `settings` is what every result of them records."""

    real: Any = None
    fake: dict[str, Any] = dataclasses.field(default_factory=dict)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    reason: str | None = None


class DistributionSection(Section):
    name = "distribution"
    label = "distribution metrics"
    modes = ("bundle", "folders")
    has_json = False
    timed = False  # seconds per metric (and row, in bundle mode)
    shards = True  # under torchrun each rank computes the Inception and CLIP features of its share of each set

    def requires(self, ctx: Context) -> str | None:
        if not set(DISTRIBUTION) & set(ctx.opts.metrics):
            return "no distribution metric asked"
        return None if ctx.real is not None and ctx.fake else "no image sets to compare"

    def run(self, ctx: Context) -> DistributionResult:
        asked = ctx.opts.metrics
        feats: dict[str, Features] = {}
        if {"fid", "kid"} & set(asked):
            feats["fid+kid"] = _inception_features(ctx)
        if "fd_clip" in asked:
            feats["fd_clip"] = _clip_features(ctx)
        feats = ctx.gather(feats)
        if "swd" in asked:  # of the whole sets on every rank: its patches are drawn in order over a set
            feats["swd"] = _swd_descriptors(ctx)
        rows: MetricRows = {row: {} for row in ctx.fake}
        for row, out in rows.items():
            if "fid+kid" in feats:
                with ctx.timer(_key(ctx, "fid+kid", row)):
                    out.update(_inception_results(feats["fid+kid"], row, [m for m in ("fid", "kid") if m in asked],
                                                  ctx.opts.seed))
            if "fd_clip" in feats:
                with ctx.timer(_key(ctx, "fd_clip", row)):
                    out["fd_clip"] = _fd_clip_result(ctx, feats["fd_clip"], row)
            if "swd" in feats:
                with ctx.timer(_key(ctx, "swd", row)):
                    out["swd"] = _swd_result(ctx, feats["swd"], row)
        return DistributionResult(rows)


def _key(ctx: Context, metric: str, row: str) -> str:
    """The seconds key: per metric, and per row in bundle mode ("fid+kid/proposed")."""
    return metric if ctx.mode == "folders" else f"{metric}/{row}"


def _each_set(ctx: Context, metric: str, fn) -> Features:
    """`fn(images)` of the reference set (timed with the first row) and of every fake set (this process's share
    of each, `ctx.share`)."""
    out = Features()
    first = next(iter(ctx.fake))
    with ctx.timer(_key(ctx, metric, first)):
        out.real = fn(ctx.real[ctx.share(len(ctx.real))], "reference")
    for row, images in ctx.fake.items():
        with ctx.timer(_key(ctx, metric, row)):
            out.fake[row] = fn(images[ctx.share(len(images))], row)
    return out


# ----------------------------------------------------------------------------------------------------------
# FID and KID.


def _inception_features(ctx: Context) -> Features:
    layer = fe.INCEPTION_LAYER
    settings: dict[str, Any] = {"features": f"inception-v3-compat/{layer}", "weights": INCEPTION.names[0],
                                "resize": fe.INCEPTION_RESIZE, "value_range": "uint8", "versions": metric_versions()}
    try:
        net = fe.build_inception(ctx.opts.inception, feature_layer=layer, device=ctx.device)
    except MissingWeightsError as exc:
        return Features(settings=settings, reason=one_line(exc))
    settings["weights"] = str(net.weights_path)

    def features(images: torch.Tensor, what: str) -> torch.Tensor:
        done = [0]

        def step(n: int) -> None:
            done[0] += n
            ctx.report(f"inception ({what})", done[0], len(images))

        return fe.inception_features(images, net, batch_size=ctx.opts.batch_size, progress=step)

    out = _each_set(ctx, "fid+kid", features)
    out.settings = settings
    return out


def _inception_results(f: Features, row: str, metrics: list[str], seed: int) -> dict[str, MetricResult]:
    if f.reason is not None:
        return {m: MetricResult.unavailable(m, f.reason, f.settings) for m in metrics}
    real, fake = f.real, f.fake[row]
    settings = {**f.settings, "num_real": len(real), "num_fake": len(fake)}
    available = {**settings, "weights_sha256": sha256(settings["weights"])}
    return fid_kid(real, fake, metrics, available, unavailable_settings=settings, kid_subsets=KID_SUBSETS, seed=seed)


# ----------------------------------------------------------------------------------------------------------
# FD_CLIP and SWD.


def _clip_features(ctx: Context) -> Features:
    clip = ctx.nets.clip
    if clip is None:
        return Features(reason=ctx.nets.clip_reason)
    return _each_set(ctx, "fd_clip", lambda images, _: fe.clip_features(images, clip.model,
                                                                         batch_size=ctx.opts.batch_size))


def _fd_clip_result(ctx: Context, f: Features, row: str) -> MetricResult:
    if f.reason is not None:
        return MetricResult.unavailable("fd_clip", f.reason)
    clip = ctx.nets.clip
    return fd_clip(f.real, f.fake[row], weights_sha256=clip.sha256, weights_name=clip.name)


def _swd_descriptors(ctx: Context) -> Features:
    """Descriptors of the first n images of each set, n = min(N_real, N_fake) (the reference set's per n)."""
    settings = SWDSettings(seed=ctx.opts.seed)
    out = Features(real={})
    try:
        for row, images in ctx.fake.items():
            n = min(len(ctx.real), len(images))
            with ctx.timer(_key(ctx, "swd", row)):
                if n not in out.real:
                    out.real[n] = image_descriptors(to_unit(ctx.real[:n]), settings)
                out.fake[row] = image_descriptors(to_unit(images[:n]), settings)
    except ValueError as exc:  # images smaller than the coarsest level
        out.reason = str(exc)
    return out


def _swd_result(ctx: Context, f: Features, row: str) -> MetricResult:
    swd = SWDSettings(seed=ctx.opts.seed)
    num_real, num_fake = len(ctx.real), len(ctx.fake[row])
    n = min(num_real, num_fake)
    settings = {**swd.to_dict(), "scale": SWD_SCALE, "value_range": "uint8 levels", "num": n,
                "reduction": "mean over pyramid levels"}
    if num_real != num_fake:
        settings["note"] = f"sets of {num_real} and {num_fake} images: the first {n} of each (by name)"
    if f.reason is not None:
        return MetricResult.unavailable("swd", f.reason, settings)
    real = [normalize_descriptors(d) for d in f.real[n]]
    fake = [normalize_descriptors(d) for d in f.fake[row]]
    levels = swd_from_descriptors(real, fake, swd_resolutions(ctx.real.shape[-1], swd.min_resolution), swd)
    return MetricResult("swd", levels.pop("swd/avg"), settings={**settings, "levels": levels})
