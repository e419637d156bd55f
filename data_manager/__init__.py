"""Collects tickets from ticket systems into a normalised, always-current local copy."""
