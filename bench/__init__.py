"""Benchmarks, each runnable as one command (see bench/README.md)."""
