"""Collectors turn upstream records into resources and persist them."""
