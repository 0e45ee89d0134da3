"""Generic component kinds every pattern shares. Importing this package registers them."""

from patterns.components import client, queue, service  # noqa: F401
