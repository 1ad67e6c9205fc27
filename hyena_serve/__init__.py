"""hyena_serve: HyenaPixel-family models from a training-capable torch reference to serving."""

__version__ = "0.1.0"
