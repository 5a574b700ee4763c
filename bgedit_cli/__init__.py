"""bgedit: edit background and scene images with StyleGAN2."""

__version__ = "0.1.0"
