"""Generic component kinds every pattern shares. Importing this package registers them."""

from patterns.components import (  # noqa: F401
    cache,
    circuit_breaker,
    client,
    election,
    load_balancer,
    queue,
    service,
    topic,
)
