"""Metrics as pure functions over tensors: features -> statistics -> metric.

- `pairwise`: l2, psnr, ms_ssim, lpips per image pair (HyperInverter's value ranges).
- `distribution` (+ `features`): FID and KID on Inception features, FD on CLIP embeddings; `MetricResult`.
- `swd`: sliced Wasserstein distance on Laplacian-pyramid patches (ProGAN).
- `segmentation`: confusion matrix -> pixel accuracy, mean class accuracy, IoU / mIoU.

`bgedit evaluate` (bgedit_cli/pipelines/evaluation/) runs them on a bundle's reconstructions or on two folders.
"""
