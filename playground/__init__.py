"""The Django project and app: thin glue around the pure-Python `patterns` package."""

from playground.celery import app as celery_app

__all__ = ["celery_app"]
