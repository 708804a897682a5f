from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class OutboxConfig(AppConfig):
    """Delivers the kernel's outbox: merchant webhooks, and consumers inside paycore (risk)."""

    name = "outbox"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from outbox.payloads import payment_fan_out, refund_fan_out
        from outbox.services.consumers import consumer_register
        from outbox.services.dispatch import outbox_wake
        from outbox.services.risk import risk_handle
        from paycore.outbox import outbox_listen, outbox_register_fan_out

        outbox_register_fan_out("payment.", payment_fan_out)
        outbox_register_fan_out("refund.", refund_fan_out)
        outbox_listen(outbox_wake)
        consumer_register("risk", risk_handle, topics={"payment.succeeded"})
        post_migrate.connect(_cursors_ensure, dispatch_uid="paycore.outbox.cursors_ensure")


def _cursors_ensure(*, app_config: Any = None, **kwargs: Any) -> None:
    if app_config is None or app_config.label != "outbox":
        return
    from outbox.services.consumers import consumer_cursors_ensure

    consumer_cursors_ensure()
