# The unique first verified copy, and the inbox sweep's index on what it claims (due time).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("inbox", "0005_duplicate_flag"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="inboundnotification", name="inbound_unapplied_idx"),
        migrations.AlterField(
            model_name="inboundnotification",
            name="dedupe_key",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
        migrations.AddIndex(
            model_name="inboundnotification",
            index=models.Index(
                condition=models.Q(("outcome__in", ["PENDING", "FAILED"]), ("verification", "VERIFIED")),
                fields=["next_check_at"],
                name="inbound_unapplied_idx",
            ),
        ),
        migrations.AddConstraint(
            model_name="inboundnotification",
            constraint=models.UniqueConstraint(
                condition=models.Q(("is_duplicate", False), ("verification", "VERIFIED")),
                fields=("channel_account", "dedupe_key"),
                name="inbound_first_verified_uniq",
            ),
        ),
    ]
