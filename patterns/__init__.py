"""Patterns Playground's simulation: pure Python, no Django anywhere below this package."""
