import patterns.catalog  # noqa: F401  (registers every kind and pattern)
