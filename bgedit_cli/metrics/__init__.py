"""Metrics as pure functions over tensors: features -> statistics -> metric.

- `segmentation`: confusion matrix -> pixel accuracy, mean class accuracy, IoU / mIoU.
"""
