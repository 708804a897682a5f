# Raw headers and bodies encrypted at rest (they carry payer identifiers); parsed payloads reduced
# to a summary without payer data.

from django.db import migrations, models

import inbox.fields
import paycore.fields


def _summary(parsed):
    parsed = parsed or {}
    summary = {"payment_no": parsed.get("payment_no"), "channel_trade_no": parsed.get("channel_trade_no")}
    trade = parsed.get("trade")
    if isinstance(trade, dict):
        summary["trade"] = {k: trade.get(k) for k in ("status", "paid_amount", "currency")}
    refund = parsed.get("refund")
    if isinstance(refund, dict):
        summary["refund"] = {k: refund.get(k) for k in ("refund_no", "status", "amount", "channel_refund_no")}
    return summary


def encrypt_raw(apps, schema_editor):
    Inbound = apps.get_model("inbox", "InboundNotification")
    for row in Inbound.objects.only("id", "body_plain", "headers_plain", "parsed").iterator(chunk_size=500):
        row.body = bytes(row.body_plain or b"")
        row.headers = row.headers_plain or {}
        row.parsed = _summary(row.parsed)
        row.save(update_fields=["body", "headers", "parsed"])


def decrypt_raw(apps, schema_editor):
    Inbound = apps.get_model("inbox", "InboundNotification")
    for row in Inbound.objects.only("id", "body", "headers").iterator(chunk_size=500):
        row.body_plain, row.headers_plain = row.body or b"", row.headers or {}
        row.save(update_fields=["body_plain", "headers_plain"])


class Migration(migrations.Migration):

    dependencies = [
        ("inbox", "0003_sweep_columns"),
    ]

    operations = [
        migrations.RenameField(model_name="inboundnotification", old_name="body", new_name="body_plain"),
        migrations.RenameField(model_name="inboundnotification", old_name="headers", new_name="headers_plain"),
        # Nullable while the data moves, so that going back can re-add and refill them.
        migrations.AlterField(model_name="inboundnotification", name="body_plain", field=models.BinaryField(null=True)),
        migrations.AlterField(
            model_name="inboundnotification", name="headers_plain", field=models.JSONField(default=dict, null=True)
        ),
        migrations.AddField(
            model_name="inboundnotification",
            name="body",
            field=inbox.fields.EncryptedBytesField(default=b""),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="inboundnotification",
            name="headers",
            field=paycore.fields.EncryptedJSONField(default=dict),
        ),
        migrations.RunPython(encrypt_raw, decrypt_raw),
        migrations.RemoveField(model_name="inboundnotification", name="body_plain"),
        migrations.RemoveField(model_name="inboundnotification", name="headers_plain"),
    ]
