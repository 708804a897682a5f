
import uuid

import django.db.models.deletion
from django.db import migrations, models


def _existing_events(apps, schema_editor):
    """Rows written before events were delivered: each gets its own id, and none is sent now
    (their payloads predate the merchant-facing shape)."""
    OutboxEvent = apps.get_model("paycore", "OutboxEvent")
    for event in OutboxEvent.objects.filter(event_id__isnull=True).only("pk", "delivered_at").iterator():
        OutboxEvent.objects.filter(pk=event.pk).update(
            event_id=uuid.uuid4(), delivery_status="DELIVERED" if event.delivered_at else "NOT_SENT"
        )


class Migration(migrations.Migration):

    dependencies = [
        ('orders', '0003_sweep_columns'),
        ('paycore', '0001_initial'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='outboxevent',
            name='outbox_undelivered_idx',
        ),
        migrations.AddField(
            model_name='outboxevent',
            name='context',
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name='outboxevent',
            name='delivery_status',
            field=models.CharField(choices=[('PENDING', 'Pending'), ('DELIVERED', 'Delivered'), ('FAILED', 'Failed'), ('NOT_SENT', 'Not Sent')], default='PENDING', max_length=10),
        ),
        migrations.AddField(
            model_name='outboxevent',
            name='event_id',
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.RunPython(_existing_events, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='outboxevent',
            name='event_id',
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.AddField(
            model_name='outboxevent',
            name='merchant',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='outbox_events', to='orders.merchant'),
        ),
        migrations.AddField(
            model_name='outboxevent',
            name='requeued_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='outboxevent',
            name='requeued_by',
            field=models.CharField(blank=True, default='', max_length=150),
        ),
        migrations.AddField(
            model_name='outboxevent',
            name='txid',
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddIndex(
            model_name='outboxevent',
            index=models.Index(condition=models.Q(('delivery_status', 'PENDING')), fields=['next_attempt_at'], name='outbox_pending_idx'),
        ),
        migrations.AddIndex(
            model_name='outboxevent',
            index=models.Index(condition=models.Q(('delivery_status', 'PENDING')), fields=['merchant', 'id'], name='outbox_merchant_pending_idx'),
        ),
        migrations.AddIndex(
            model_name='outboxevent',
            index=models.Index(fields=['merchant', 'id'], name='outbox_merchant_stream_idx'),
        ),
        migrations.AddIndex(
            model_name='outboxevent',
            index=models.Index(fields=['txid', 'id'], name='outbox_stream_idx'),
        ),
        migrations.AddConstraint(
            model_name='outboxevent',
            constraint=models.CheckConstraint(condition=models.Q(('delivery_status__in', ['PENDING', 'DELIVERED', 'FAILED', 'NOT_SENT'])), name='outbox_status_valid'),
        ),
        migrations.AddConstraint(
            model_name='outboxevent',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('delivery_status', 'DELIVERED'), _negated=True), ('delivered_at__isnull', False), _connector='OR'), name='outbox_delivered_has_time'),
        ),
    ]
