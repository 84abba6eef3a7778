"""Benchmarks: `python -m experiments.benchmarks.<name>` prints a table (never timed assertions in tests)."""
