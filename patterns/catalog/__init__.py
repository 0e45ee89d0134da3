"""The pattern catalog. Importing it registers every component kind and every pattern.

Each pattern lives in its own module under its category; the import list below is the one
place that says which exist.
"""

from patterns import components  # noqa: F401  (generic kinds first)
from patterns.catalog.communication import (  # noqa: F401
    event_streaming,
    load_balancing,
    publisher_subscriber,
    request_response,
)
from patterns.catalog.coordination import (  # noqa: F401
    consensus,
    distributed_lock,
    leader_election,
)
from patterns.catalog.messaging import transactional_inbox, transactional_outbox  # noqa: F401
from patterns.catalog.orchestration import choreography, orchestration, saga  # noqa: F401
from patterns.catalog.registry import CATEGORIES, PATTERNS, Pattern, get, register_pattern
from patterns.catalog.reliability import circuit_breaker, retry, timeout  # noqa: F401

__all__ = ["CATEGORIES", "PATTERNS", "Pattern", "get", "register_pattern"]
