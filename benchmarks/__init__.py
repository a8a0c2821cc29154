"""Benchmarks of the elope library (``python -m benchmarks.<name>``); see benchmarks/README.md."""
