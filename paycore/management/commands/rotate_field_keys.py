"""Re-encrypt every encrypted field under the primary key, so old keys can be dropped."""

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from channels.models import ChannelAccount
from orders.models import Merchant, Order


class Command(BaseCommand):
    help = "Re-encrypt encrypted fields with the first key of FIELD_ENCRYPTION_KEYS."

    def handle(self, *args: Any, **options: Any) -> None:
        plan = [(Merchant, ["webhook_secret"]), (Order, ["shipping_address", "phone"]),
                (ChannelAccount, ["credentials"])]
        for model, fields in plan:
            count = 0
            for pk in model.objects.values_list("pk", flat=True).iterator():
                with transaction.atomic():
                    row = model.objects.select_for_update(no_key=True).get(pk=pk)
                    row.save(update_fields=fields)  # decrypts on load, encrypts with the primary key on save
                count += 1
            self.stdout.write(f"{model.__name__}: {count} rows re-encrypted")
