"""Generic component kinds every pattern shares. Importing this package registers them."""

from patterns.components import (  # noqa: F401
    cache,
    circuit_breaker,
    client,
    consensus,
    election,
    kv_store,
    load_balancer,
    lock,
    queue,
    service,
    topic,
)
