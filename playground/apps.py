from django.apps import AppConfig


class PlaygroundConfig(AppConfig):
    name = "playground"
    verbose_name = "Patterns Playground"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import patterns.catalog  # noqa: F401  (registers every kind and pattern)
