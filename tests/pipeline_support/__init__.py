"""Helpers for the pipeline's tests: a private Redis database, configs, and real processes."""
