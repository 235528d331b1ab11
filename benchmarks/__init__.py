"""Benchmarks and investigations behind docs/RESULTS.md; run each as `python -m widthnas.benchmarks.NAME` or `python benchmarks/NAME.py`."""
