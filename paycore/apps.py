from django.apps import AppConfig


class PaycoreConfig(AppConfig):
    name = "paycore"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the system checks, the OpenAPI extensions and the API-key cache's signal receivers.
        from paycore import apikeys, checks, schema  # noqa: F401
