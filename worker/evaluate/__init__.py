"""Offline quality evaluation: MovieLens-100K replayed through the worker's own ranking path,
next to baselines (`python -m worker.evaluate`, `make eval-replay`)."""
