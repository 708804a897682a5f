from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SchedulersConfig(AppConfig):
    name = "schedulers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from schedulers.beat import schedules_seed

        post_migrate.connect(schedules_seed, dispatch_uid="paycore.schedules_seed")
