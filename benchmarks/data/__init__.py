"""Benchmark data: fetched through package registries by prepare.py; small slices bundled in bundled/."""

from .prepare import ITEMS, prepare

__all__ = ["ITEMS", "prepare"]
