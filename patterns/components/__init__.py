"""Generic component kinds every pattern shares. Importing this package registers them."""

from patterns.components import (  # noqa: F401
    cache,
    client,
    load_balancer,
    queue,
    service,
    topic,
)
