"""Benchmarks, run as modules from the repository root (see bench/README.md):
``python -m bench.run``, ``bench.evaluate``, ``bench.paths``, ``bench.instructions``,
``bench.signaling_load``. ``bench/workload.py`` is an ordinary MPyC script, run as a file."""
