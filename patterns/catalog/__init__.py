"""The pattern catalog. Importing it registers every component kind and every pattern.

Each pattern lives in its own module under its category; the import list below is the one
place that says which exist.
"""

from patterns import components  # noqa: F401  (generic kinds first)
from patterns.catalog.registry import CATEGORIES, PATTERNS, Pattern, get, register_pattern

__all__ = ["CATEGORIES", "PATTERNS", "Pattern", "get", "register_pattern"]

# The patterns, by category.
from patterns.catalog.communication import request_response  # noqa: F401
