"""Moved to ``tests.e2e.helpers``; re-exported for the modules not converted yet."""

from tests.e2e.helpers import new_volume, wait

__all__ = ["new_volume", "wait"]
