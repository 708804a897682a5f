import paycore.fields
from django.db import migrations


def encrypt_existing(apps, schema_editor):
    """Payer ids stored before the column was encrypted: seal them now (raw SQL, because the
    field class would try to decrypt the plaintext on the way in)."""
    from paycore import crypto

    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT id, payer_id FROM payments_payment WHERE payer_id <> ''")
        for pk, value in cursor.fetchall():
            if not crypto.is_encrypted(value):
                cursor.execute("UPDATE payments_payment SET payer_id = %s WHERE id = %s", [crypto.encrypt(value), pk])


class Migration(migrations.Migration):
    dependencies = [("payments", "0006_backfill_map_outcomes")]

    operations = [
        migrations.AlterField(
            model_name="payment",
            name="payer_id",
            field=paycore.fields.EncryptedTextField(blank=True, default=""),
        ),
        migrations.RunPython(encrypt_existing, migrations.RunPython.noop),
    ]
