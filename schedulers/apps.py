from django.apps import AppConfig


class SchedulersConfig(AppConfig):
    name = "schedulers"
    default_auto_field = "django.db.models.BigAutoField"
