from django.apps import AppConfig


class PaycoreConfig(AppConfig):
    name = "paycore"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from paycore import checks, schema  # noqa: F401  registers the system checks and OpenAPI extensions
