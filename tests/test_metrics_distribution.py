"""Distribution metrics: FID/KID closed forms, parity with torch-fidelity (its own `calculate_metrics` on PNG
folders, both sides loading the same Inception file written here), FD_CLIP, LPIPS parity with the lpips package,
and missing weights as unavailable results."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from torch import nn

from bgedit_cli.errors import CheckpointError
from bgedit_cli.weights import MissingWeightsError
from bgedit_cli.metrics import distribution as dm
from bgedit_cli.metrics import features as fe

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """An empty $BGEDIT_HOME and torch hub cache."""
    monkeypatch.setenv("BGEDIT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return tmp_path / "home" / "weights"


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory) -> Path:
    """A randomly initialised Inception-v3 in the publisher's format: `torch.save` of
    `FeatureExtractorInceptionV3`'s state dict (566 tensors, BN statistics included), convs He-initialised so the
    2048-d features are O(1)."""
    from torch_fidelity import feature_extractor_inceptionv3 as tf_inception

    torch.manual_seed(0)
    with mock.patch.object(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda *a, **k: None), \
            mock.patch.object(tf_inception, "load_state_dict_from_url", lambda *a, **k: {}):
        net = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("weights") / INCEPTION_FILE
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def png_folders(tmp_path_factory) -> tuple[Path, Path]:
    """Two folders of 6 small RGB PNGs from different distributions (noise around two colours)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name, base in (("real", (90, 140, 200)), ("fake", (160, 120, 60))):
        (root / name).mkdir()
        for i in range(6):
            img = np.clip(np.array(base) + rng.normal(0, 40, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{i:03d}.png")
    return root / "real", root / "fake"


def read_pngs(folder: Path) -> torch.Tensor:
    from PIL import Image

    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


# ----------------------------------------------------------------------------------------------------------
# FID: closed forms.


def test_fid_of_diagonal_gaussians_is_the_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert dm.fid_from_stats(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)


def test_fid_of_scaled_full_covariance():
    # sigma2 = c^2 sigma1 -> tr(sigma1 + c^2 sigma1 - 2 c sigma1) = (1 - c)^2 tr(sigma1), for any full sigma1.
    rng = np.random.default_rng(2)
    a = rng.normal(size=(5, 5))
    sigma, c = a @ a.T + 0.1 * np.eye(5), 1.7
    mu = rng.normal(size=5)
    assert dm.fid_from_stats(mu, sigma, mu + 1, c**2 * sigma) == pytest.approx(5 + (1 - c) ** 2 * np.trace(sigma),
                                                                               rel=1e-9)


def test_fid_of_identical_sets_is_zero_and_stats_are_float64():
    feats = torch.randn(40, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mu, sigma = dm.feature_stats(feats)
    assert mu.dtype == sigma.dtype == np.float64 and sigma.shape == (8, 8)
    np.testing.assert_allclose(sigma, np.cov(feats.double().numpy(), rowvar=False))
    assert abs(dm.frechet_distance(feats, feats)) < 1e-9
    assert dm.frechet_distance(feats, feats + 0.5) == pytest.approx(8 * 0.25, rel=1e-9)


def test_fid_matches_torch_fidelity_on_singular_covariances():
    """Few samples in many dimensions (rank-deficient covariances, as FID on small sets is): scipy's sqrtm here,
    eigenvalues in torch-fidelity."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(7, 32, generator=g), torch.rand(9, 32, generator=g) * 1.5
    ref = fid_statistics_to_metric(fid_features_to_statistics(a), fid_features_to_statistics(b), False)
    assert dm.frechet_distance(a, b) == pytest.approx(ref["frechet_inception_distance"], rel=1e-5)


def test_fid_eps_offset_when_the_root_is_not_finite():
    from scipy import linalg

    calls = []
    real_sqrtm = linalg.sqrtm

    def flaky_sqrtm(m):
        calls.append(m)
        return np.full_like(m, np.nan) if len(calls) == 1 else real_sqrtm(m)

    s = np.diag([1.0, 4.0])
    with mock.patch.object(linalg, "sqrtm", flaky_sqrtm):
        value = dm.fid_from_stats(np.zeros(2), s, np.zeros(2), s, eps=1e-6)
    assert len(calls) == 2
    np.testing.assert_allclose(calls[1], (s + 1e-6 * np.eye(2)) @ (s + 1e-6 * np.eye(2)))
    assert abs(value) < 1e-5


def test_fid_rejects_mismatched_or_too_few():
    with pytest.raises(ValueError, match="mismatched"):
        dm.fid_from_stats(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="at least 2"):
        dm.feature_stats(torch.zeros(1, 4))


# ----------------------------------------------------------------------------------------------------------
# KID.


def test_mmd2_unbiased_by_definition_and_like_torch_fidelity():
    from torch_fidelity.metric_kid import kernel_poly, mmd2

    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(6, 5)), rng.normal(1, 1, size=(6, 5))
    k = dm.polynomial_kernel
    np.testing.assert_allclose(k(x, y), (x @ y.T / 5 + 1) ** 3)
    m = 6
    brute = (sum(k(x[i:i + 1], x[j:j + 1])[0, 0] + k(y[i:i + 1], y[j:j + 1])[0, 0]
                 for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
             - 2 * sum(k(x[i:i + 1], y[j:j + 1])[0, 0] for i in range(m) for j in range(m)) / m**2)
    ours = dm.mmd2_unbiased(k(x, x), k(x, y), k(y, y))
    assert ours == pytest.approx(brute, rel=1e-12)
    opts = dict(kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1)
    ref = mmd2(kernel_poly(x, x, **opts), kernel_poly(x, y, **opts), kernel_poly(y, y, **opts))
    assert ours == pytest.approx(ref, rel=1e-12)


def test_kid_is_deterministic_per_seed_and_near_zero_for_one_distribution():
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(60, 16, generator=g), torch.randn(60, 16, generator=g)
    shifted = b + 1.0
    run = lambda x, y, seed: dm.kid(x, y, subset_size=20, subsets=25, seed=seed)  # noqa: E731
    assert run(a, b, 7) == run(a, b, 7)
    assert run(a, b, 7) != run(a, b, 8)
    same, _ = run(a, b, 7)
    far, far_std = run(a, shifted, 7)
    assert far > 0.1 and far_std > 0
    assert abs(same) < 0.05 * far
    assert abs(dm.kid(a, a, seed=0)[0]) < 0.05 * far  # identical sets, default subset size (all 60)


def test_kid_subset_size_defaults_and_limits():
    a, b = torch.randn(5, 4), torch.randn(8, 4)
    mean, std = dm.kid(a, b, subsets=3)  # subset size min(1000, 5, 8) = 5: every subset of `a` is all of it
    assert np.isfinite(mean) and std >= 0
    with pytest.raises(ValueError, match="subset size 6"):
        dm.kid(a, b, subset_size=6)
    with pytest.raises(ValueError, match="feature sizes differ"):
        dm.kid(a, torch.randn(8, 3))


# ----------------------------------------------------------------------------------------------------------
# Inception: parity with torch-fidelity, missing and wrong weights.


def test_default_feature_layer_is_torch_fidelitys():
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3 as Ref

    assert fe.INCEPTION_LAYER == Ref.get_default_feature_layer_for_metric("fid")
    assert fe.INCEPTION_LAYER == Ref.get_default_feature_layer_for_metric("kid")


def _torch_fidelity_metrics(real: Path, fake: Path, weights: Path, layer: str) -> dict:
    import torch_fidelity

    return torch_fidelity.calculate_metrics(
        input1=str(real), input2=str(fake), cuda=False, fid=True, kid=True, feature_extractor_weights_path=str(weights),
        feature_layer_fid=layer, feature_layer_kid=layer, kid_subset_size=6, kid_subsets=2, cache=False,
        save_cpu_ram=True, verbose=False, samples_find_ext="png")


def _check_parity(png_folders, inception_file, layer: str | None) -> None:
    real, fake = png_folders
    ref = _torch_fidelity_metrics(real, fake, inception_file, layer or fe.INCEPTION_LAYER)
    out = dm.inception_metrics(read_pngs(real), read_pngs(fake), weights=inception_file, feature_layer=layer,
                               batch_size=4, kid_subsets=2)
    assert out["fid"].value == pytest.approx(ref["frechet_inception_distance"], rel=1e-4)
    assert out["fid"].value > 1.0  # the two folders differ
    # With the subset size equal to the set size every subset is the whole set, whatever the RNG.
    assert out["kid"].value == pytest.approx(ref["kernel_inception_distance_mean"] * 1e3, rel=1e-3)
    assert out["kid"].std == pytest.approx(0.0, abs=1e-6 * abs(out["kid"].value))
    settings = out["kid"].settings
    assert settings["num_real"] == settings["num_fake"] == 6 and settings["subset_size"] == 6
    assert settings["scale"] == 1e3 and settings["weights"] == str(inception_file)
    assert settings["features"] == f"inception-v3-compat/{layer or '2048'}" and settings["value_range"] == "uint8"
    assert settings["versions"]["torch_fidelity"]


def test_fid_kid_match_torch_fidelity_calculate_metrics(png_folders, inception_file):
    """Same weight file, same PNGs, torch-fidelity's own pipeline vs ours; the 192-d layer keeps scipy's sqrtm
    fast (the 2048-d one takes ~40 s on 2 cores: test_..._2048 below, marked slow)."""
    _check_parity(png_folders, inception_file, "192")


@pytest.mark.slow
def test_fid_kid_match_torch_fidelity_2048(png_folders, inception_file):
    _check_parity(png_folders, inception_file, None)


def test_inception_features_are_torch_fidelitys_and_batched(inception_file):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    ref = FeatureExtractorInceptionV3("inception-v3-compat", ["64"], feature_extractor_weights_path=str(inception_file))
    net = fe.build_inception(inception_file, feature_layer="64")
    images = torch.randint(0, 256, (3, 3, 20, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    feats = fe.inception_features(images, net, batch_size=2)
    assert feats.shape == (3, 64) and feats.dtype == torch.float32
    torch.testing.assert_close(feats, ref(images)[0], rtol=1e-5, atol=1e-6)
    seen = []
    again = fe.inception_features(iter([images[:1], images[1:]]), net, progress=seen.append)  # batches given
    torch.testing.assert_close(again, feats, rtol=1e-5, atol=1e-6)
    assert seen == [1, 2]
    with pytest.raises(TypeError, match="uint8"):
        fe.inception_features(images.float(), net)


def test_missing_inception_weights_make_metrics_unavailable(no_weights):
    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    out = dm.inception_metrics(images, images)
    assert set(out) == {"fid", "kid"}
    for result in out.values():
        assert result.value is None and not result.available
        reason = result.unavailable_reason
        assert INCEPTION_FILE in reason and fe.INCEPTION.source in reason and str(no_weights) in reason
        assert "Presets tiny and demo" not in reason and "FID and KID are unavailable" in reason
    assert out["fid"].to_dict()["value"] is None
    with pytest.raises(MissingWeightsError, match="--inception"):
        fe.build_inception(no_weights / "nowhere.pth")


def test_inception_weights_found_in_bgedit_home(no_weights, inception_file):
    no_weights.mkdir(parents=True)
    os.symlink(inception_file, no_weights / INCEPTION_FILE)
    assert fe.find_inception() == no_weights / INCEPTION_FILE


def test_too_few_images_is_unavailable_not_an_error(inception_file):
    one = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    out = dm.inception_metrics(one, one, weights=inception_file, feature_layer="64")
    assert out["fid"].value is None and "at least 2" in out["fid"].unavailable_reason
    assert out["kid"].value is None


def test_wrong_inception_files_are_clear_errors(tmp_path):
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match="not torch-fidelity's Inception-v3"):
        fe.build_inception(other)
    code = tmp_path / "code.pth"
    torch.save({"f": os.getcwd}, code)  # a pickled callable: refused before torch-fidelity unpickles it
    with pytest.raises(CheckpointError, match="not a readable"):
        fe.build_inception(code)


# ----------------------------------------------------------------------------------------------------------
# FD_CLIP.


def tiny_clip() -> nn.Module:
    from bgedit_cli.nn.clip_model import import_clip

    torch.manual_seed(0)
    return import_clip().model.CLIP(embed_dim=16, image_resolution=32, vision_layers=1, vision_width=64,
                                    vision_patch_size=8, context_length=8, vocab_size=64, transformer_width=32,
                                    transformer_heads=1, transformer_layers=1).eval()


def test_clip_features_match_torch_fidelitys_clip_extractor():
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase
    from torch_fidelity.feature_extractor_clip import FeatureExtractorCLIP

    model = tiny_clip()
    ref = FeatureExtractorCLIP.__new__(FeatureExtractorCLIP)  # its constructor only loads OpenAI's files
    FeatureExtractorBase.__init__(ref, "clip-vit-b-32", ["clip"])
    ref.feature_extractor_internal_dtype, ref.model, ref.resolution = torch.float32, model, 32
    images = torch.randint(0, 256, (5, 3, 48, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    feats = fe.clip_features(images, model, batch_size=2)
    assert feats.shape == (5, 16)
    with torch.no_grad():
        torch.testing.assert_close(feats, ref(images)[0], rtol=1e-5, atol=1e-6)


def test_fd_clip_labels_its_weights():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(20, 4, generator=g), torch.randn(20, 4, generator=g) + 1
    ours = dm.fd_clip(a, b, weights_sha256="ab" * 32, weights_name="clip.safetensors")
    assert ours.value == pytest.approx(dm.frechet_distance(a, b))
    assert ours.settings["comparable"] is False and "not comparable to published FID" in ours.settings["note"]
    assert "clip.safetensors" in ours.settings["note"] and ours.settings["weights_sha256"] == "ab" * 32
    openai = dm.fd_clip(a, a, weights_sha256=fe.openai_clip_sha256().upper(), weights_name="ViT-B-32.pt")
    assert openai.settings["comparable"] is True and "not comparable" not in openai.settings["note"]
    assert abs(openai.value) < 1e-9
    assert fe.openai_clip_sha256() == "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"


# ----------------------------------------------------------------------------------------------------------
# LPIPS: bgedit's loader vs the lpips package.


def test_lpips_matches_the_lpips_package_on_the_same_alexnet(tmp_path, monkeypatch):
    """One random torchvision AlexNet file: ours reads it directly; the reference is `lpips.LPIPS(pretrained=True,
    pnet_rand=False)`, whose torchvision loads the same file from the torch hub cache (no download: it is there)."""
    import warnings

    import lpips
    import torchvision

    from bgedit_cli.losses.lpips import LPIPS

    torch.manual_seed(0)
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    alexnet_file = hub / "checkpoints" / "alexnet-owt-7be5be79.pth"
    torch.save(torchvision.models.alexnet().state_dict(), alexnet_file)
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=False, verbose=False).eval()
    ours = LPIPS(alexnet_file)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    with torch.no_grad():
        expected = ref(x, y).flatten()
        torch.testing.assert_close(ours(x, y), expected, rtol=1e-5, atol=1e-7)
    assert (expected > 0).all()
    assert torch.equal(ref.net.slice1[0].weight, torch.load(alexnet_file)["features.0.weight"])  # same file
