"""Training pieces behind ``python -m hyena_serve.train``: data, optimiser and schedule,
distributed setup, checkpoints and the epoch loop."""
