from django.db import migrations


def backfill(apps, schema_editor):
    """Refunds made before attempts and allocations existed: their one attempt went out under
    the refund number, and they refunded the payment's current maps in order."""
    Refund = apps.get_model("refunds", "Refund")
    Attempt = apps.get_model("refunds", "RefundAttempt")
    Allocation = apps.get_model("refunds", "RefundAllocation")
    Map = apps.get_model("payments", "PaymentOrderMap")
    used: dict[int, int] = {}
    for refund in Refund.objects.filter(attempts__isnull=True).order_by("pk").iterator():
        done = {"SUCCEEDED": "SUCCEEDED", "FAILED": "FAILED"}.get(refund.status, "SUBMITTED")
        Attempt.objects.create(
            refund=refund,
            number=1,
            request_no=refund.refund_no,
            channel_refund_no=refund.channel_refund_no or "",
            status=done,
            fail_code=refund.fail_code,
        )
        left = refund.amount
        for payment_map in Map.objects.filter(payment_id=refund.payment_id).order_by("-is_current", "pk"):
            if left <= 0:
                break
            share = min(left, payment_map.amount - used.get(payment_map.pk, 0))
            if share > 0:
                Allocation.objects.create(refund=refund, payment_map=payment_map, amount=share)
                used[payment_map.pk] = used.get(payment_map.pk, 0) + share
                left -= share


class Migration(migrations.Migration):
    dependencies = [("refunds", "0003_sweeps_and_attempts"), ("payments", "0006_backfill_map_outcomes")]
    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
