"""Open-loop latency load tests for the worker: `python -m load_tests --help`."""
