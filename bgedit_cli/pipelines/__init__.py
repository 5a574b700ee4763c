"""Pipelines: plain functions over networks and tensors (no printing, no file I/O)."""
