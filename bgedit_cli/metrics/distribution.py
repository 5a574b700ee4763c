"""Distribution metrics between two image sets, as pure functions: features -> statistics -> metric.

- `feature_stats(feats) -> (mu, sigma)`: mean and covariance (float64, `np.cov` with N - 1).
- `fid_from_stats(mu1, sigma1, mu2, sigma2)`: the Fréchet distance of two Gaussians,
  `||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))`, with `scipy.linalg.sqrtm` and, when the
  product is singular enough to give a non-finite root, `eps * I` added to both covariances (pytorch-fid's rule).
  torch-fidelity takes the trace of the root from eigenvalues instead; both agree to ~1e-6 relative (tested).
- `kid(feats_real, feats_fake)`: Kernel Inception Distance (Bińkowski et al. 2018) as torch-fidelity computes it:
  the unbiased MMD^2 with the polynomial kernel `(x.y / D + 1)^3`, averaged over `subsets` random subsets of
  `subset_size` per set (drawn without replacement from an explicit `np.random.Generator(seed)`); mean and std.
  Raw values; results report them x 1e3 (`KID_SCALE`), as the paper's tables do.
- FID and KID read Inception features (`features.inception_features`, torch-fidelity's network and weights);
  FD_CLIP is the Fréchet distance on CLIP image embeddings (`features.clip_features`).

Every metric comes back as a `MetricResult` with its settings (set sizes, feature layer, resize filter, value
range, weights file, library versions). Without the weights there is no number: `value` is None and
`unavailable_reason` says which file is missing, where it comes from and where it goes; the caller carries on.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from bgedit_cli.errors import one_line

KID_SCALE = 1e3
KID_DEGREE = 3
FID_EPS = 1e-6
CLIP_FD_REFERENCE = "OpenAI CLIP ViT-B/32"


@dataclasses.dataclass(frozen=True)
class MetricResult:
    """One metric: its value (None when unavailable, then `unavailable_reason` says why), a spread where the
    metric has one (KID's std over subsets), and everything the number depends on."""

    name: str
    value: float | None
    unavailable_reason: str | None = None
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    std: float | None = None

    @classmethod
    def unavailable(cls, name: str, reason: str, settings: dict[str, Any] | None = None) -> "MetricResult":
        return cls(name, None, reason, dict(settings or {}))

    @property
    def available(self) -> bool:
        return self.value is not None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------------------
# Statistics and metrics.


def _as_features(feats: torch.Tensor | np.ndarray, what: str = "features") -> np.ndarray:
    f = feats.detach().cpu().double().numpy() if isinstance(feats, torch.Tensor) else np.asarray(feats, np.float64)
    if f.ndim != 2:
        raise ValueError(f"{what} must be [N, D], got shape {list(f.shape)}")
    if f.shape[0] < 2:
        raise ValueError(f"{what}: at least 2 images are needed, got {f.shape[0]}")
    return f


def feature_stats(feats: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features [N, D] -> (mu [D], sigma [D, D]), float64; sigma is the unbiased covariance."""
    f = _as_features(feats)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def fid_from_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, *,
                   eps: float = FID_EPS) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (module doc)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"mismatched statistics: mu {mu1.shape} / {mu2.shape}, sigma {sigma1.shape} / "
                         f"{sigma2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():  # a singular product warns; it is handled below
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.max(np.abs(np.diagonal(covmean).imag))
        if imag > 1e-3:
            raise ValueError(f"the covariance product has no real square root (imaginary part {imag:.3g}); "
                             "too few images for the feature size?")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_distance(feats1: torch.Tensor | np.ndarray, feats2: torch.Tensor | np.ndarray) -> float:
    """`fid_from_stats` of two feature sets [N1, D], [N2, D]."""
    return fid_from_stats(*feature_stats(feats1), *feature_stats(feats2))


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = KID_DEGREE) -> np.ndarray:
    """`(x y^T / D + 1)^degree`: [M, D], [M, D] -> [M, M]."""
    return (x @ y.T / x.shape[1] + 1.0) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    """Unbiased MMD^2 from kernel matrices [M, M]: diagonals of k_xx and k_yy left out, k_xy whole."""
    m = k_xx.shape[0]
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / (m * m))


def kid(feats_real: torch.Tensor | np.ndarray, feats_fake: torch.Tensor | np.ndarray, *,
        subset_size: int | None = None, subsets: int = 100, seed: int = 0) -> tuple[float, float]:
    """KID (raw, not x 1e3): (mean, std) of the unbiased polynomial-kernel MMD^2 over random subsets.
    `subset_size` defaults to min(1000, N_real, N_fake)."""
    x, y = _as_features(feats_real, "real features"), _as_features(feats_fake, "fake features")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature sizes differ: {x.shape[1]} and {y.shape[1]}")
    m = min(1000, len(x), len(y)) if subset_size is None else subset_size
    if not 2 <= m <= min(len(x), len(y)):
        raise ValueError(f"KID subset size {m} must be between 2 and the smaller set size "
                         f"({min(len(x), len(y))})")
    rng = np.random.default_rng(seed)
    mmds = np.empty(subsets)
    for i in range(subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        mmds[i] = mmd2_unbiased(polynomial_kernel(a, a), polynomial_kernel(a, b), polynomial_kernel(b, b))
    return float(mmds.mean()), float(mmds.std())


# ----------------------------------------------------------------------------------------------------------
# Results with settings.


def library_versions() -> dict[str, str]:
    import scipy
    import torch_fidelity

    return {"torch": torch.__version__, "torch_fidelity": torch_fidelity.__version__, "numpy": np.__version__,
            "scipy": scipy.__version__}


def inception_metrics(real: torch.Tensor | Iterable[torch.Tensor], fake: torch.Tensor | Iterable[torch.Tensor], *,
                      metrics: Sequence[str] = ("fid", "kid"), weights: str | Path | None = None,
                      feature_layer: str | None = None, batch_size: int = 64, device: str | torch.device = "cpu",
                      kid_subset_size: int | None = None, kid_subsets: int = 100, seed: int = 0,
                      progress: Callable[[int], None] | None = None) -> dict[str, MetricResult]:
    """FID and/or KID (x 1e3) of two uint8 image sets [N, 3, H, W] (tensors or iterables of batches) with
    torch-fidelity's Inception-v3. Missing weights or too few images give unavailable results, not errors."""
    from bgedit_cli.metrics.features import INCEPTION_LAYER, INCEPTION_RESIZE, build_inception, inception_features
    from bgedit_cli.weights import INCEPTION, MissingWeightsError

    unknown = set(metrics) - {"fid", "kid"}
    if unknown:
        raise ValueError(f"unknown Inception metric(s) {sorted(unknown)}; known: fid, kid")
    layer = feature_layer or INCEPTION_LAYER
    settings: dict[str, Any] = {"features": f"inception-v3-compat/{layer}", "weights": INCEPTION.names[0],
                                "resize": INCEPTION_RESIZE, "value_range": "uint8", "versions": library_versions()}
    try:
        net = build_inception(weights, feature_layer=layer, device=device)
    except MissingWeightsError as exc:
        return {m: MetricResult.unavailable(m, one_line(exc), settings) for m in metrics}
    settings["weights"] = str(net.weights_path)
    real_f = inception_features(real, net, batch_size=batch_size, progress=progress)
    fake_f = inception_features(fake, net, batch_size=batch_size, progress=progress)
    settings.update(num_real=len(real_f), num_fake=len(fake_f))
    return fid_kid(real_f, fake_f, metrics, settings, kid_subset_size=kid_subset_size, kid_subsets=kid_subsets,
                   seed=seed)


def fid_kid(real_f: torch.Tensor | np.ndarray, fake_f: torch.Tensor | np.ndarray, metrics: Sequence[str],
            settings: dict[str, Any], *, unavailable_settings: dict[str, Any] | None = None,
            kid_subset_size: int | None = None, kid_subsets: int = 100, seed: int = 0) -> dict[str, MetricResult]:
    """FID and/or KID (x 1e3) of two Inception feature sets [N, D]. A metric with too few images for it is an
    unavailable result (with `unavailable_settings`, default `settings`), not an error."""
    out = {}
    for name in metrics:
        try:
            if name == "fid":
                out[name] = MetricResult(name, frechet_distance(real_f, fake_f), settings=settings)
            else:
                m = min(1000, len(real_f), len(fake_f)) if kid_subset_size is None else kid_subset_size
                mean, std = kid(real_f, fake_f, subset_size=m, subsets=kid_subsets, seed=seed)
                out[name] = MetricResult(name, mean * KID_SCALE, std=std * KID_SCALE, settings={
                    **settings, "scale": KID_SCALE, "subset_size": m, "subsets": kid_subsets, "seed": seed,
                    "kernel": f"polynomial, degree {KID_DEGREE}, gamma 1/D, coef0 1"})
        except ValueError as exc:  # too few images for this metric
            out[name] = MetricResult.unavailable(name, str(exc),
                                                 settings if unavailable_settings is None else unavailable_settings)
    return out


def fd_clip(feats_real: torch.Tensor | np.ndarray, feats_fake: torch.Tensor | np.ndarray, *,
            weights_sha256: str, weights_name: str = "") -> MetricResult:
    """Fréchet distance on CLIP image embeddings (`features.clip_features`), labelled with the CLIP's weights.

    Comparable to published FD_CLIP numbers (torch-fidelity's `clip-vit-b-32`) only with OpenAI's ViT-B/32
    file; any other CLIP (e.g. a small one trained here) gets a note saying so. Never on FID's scale."""
    from bgedit_cli.metrics.features import CLIP_RESIZE, openai_clip_sha256

    comparable = weights_sha256.lower() == openai_clip_sha256()
    note = (f"{CLIP_FD_REFERENCE} image embeddings, as torch-fidelity's clip-vit-b-32; not on the scale of "
            "Inception FID" if comparable else
            f"CLIP weights {weights_name or weights_sha256[:12]} are not {CLIP_FD_REFERENCE}: not comparable to "
            "published FID or FD_CLIP numbers, only between runs with the same CLIP")
    settings = {"features": "clip image embedding (encode_image, not normalised)", "resize": CLIP_RESIZE,
                "value_range": "uint8", "weights": weights_name, "weights_sha256": weights_sha256,
                "comparable": comparable, "note": note, "versions": library_versions()}
    try:
        value = frechet_distance(feats_real, feats_fake)
    except ValueError as exc:
        return MetricResult.unavailable("fd_clip", str(exc), settings)
    settings.update(num_real=len(feats_real), num_fake=len(feats_fake))
    return MetricResult("fd_clip", value, settings=settings)
