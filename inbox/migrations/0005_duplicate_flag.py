# Duplicates are recognised by a partial unique index on the first verified copy of each
# notification (per account and dedupe key); later copies already stored are flagged.

from django.db import migrations, models

MARK_LATER_COPIES = """
UPDATE inbox_inboundnotification AS later SET is_duplicate = true
WHERE later.verification = 'VERIFIED' AND EXISTS (
    SELECT 1 FROM inbox_inboundnotification AS first
    WHERE first.verification = 'VERIFIED' AND first.channel_account_id = later.channel_account_id
      AND first.dedupe_key = later.dedupe_key AND first.id < later.id
)
"""


class Migration(migrations.Migration):

    dependencies = [
        ("inbox", "0004_encrypted_raw"),
    ]

    operations = [
        migrations.AddField(
            model_name="inboundnotification", name="is_duplicate", field=models.BooleanField(default=False)
        ),
        migrations.RunSQL(MARK_LATER_COPIES, migrations.RunSQL.noop),
    ]
