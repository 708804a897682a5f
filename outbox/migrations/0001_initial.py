
import django.db.models.deletion
import paycore.fields
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('orders', '0003_sweep_columns'),
        ('paycore', '0002_outbox_delivery'),
    ]

    operations = [
        migrations.CreateModel(
            name='ConsumerCursor',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('next_check_at', models.DateTimeField(blank=True, db_index=True, null=True)),
                ('check_failures', models.PositiveIntegerField(default=0)),
                ('last_check_error', models.TextField(blank=True, default='')),
                ('name', models.CharField(max_length=64, unique=True)),
                ('last_txid', models.BigIntegerField(default=0)),
                ('last_event_pk', models.BigIntegerField(default=0)),
                ('handled', models.PositiveBigIntegerField(default=0)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'abstract': False,
            },
        ),
        migrations.CreateModel(
            name='SuspendedMerchant',
            fields=[
            ],
            options={
                'proxy': True,
                'indexes': [],
                'constraints': [],
            },
            bases=('orders.merchant',),
        ),
        migrations.CreateModel(
            name='WebhookDelivery',
            fields=[
            ],
            options={
                'verbose_name_plural': 'webhook deliveries',
                'proxy': True,
                'indexes': [],
                'constraints': [],
            },
            bases=('paycore.outboxevent',),
        ),
        migrations.CreateModel(
            name='WebhookSecretOverlap',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('previous_secret', paycore.fields.EncryptedTextField()),
                ('valid_until', models.DateTimeField()),
                ('rotated_at', models.DateTimeField(auto_now=True)),
                ('rotated_by', models.CharField(blank=True, default='', max_length=150)),
                ('merchant', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='webhook_secret_overlap', to='orders.merchant')),
            ],
        ),
        migrations.CreateModel(
            name='RiskDecision',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('rule', models.CharField(max_length=32)),
                ('outcome', models.CharField(choices=[('ALLOW', 'Allow'), ('SUSPEND', 'Suspend'), ('ALREADY_SUSPENDED', 'Already Suspended')], max_length=20)),
                ('reasons', models.JSONField(blank=True, default=list)),
                ('figures', models.JSONField(default=dict)),
                ('applied_at', models.DateTimeField(blank=True, null=True)),
                ('created_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                ('event', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='risk_decisions', to='paycore.outboxevent')),
                ('merchant', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='risk_decisions', to='orders.merchant')),
            ],
            options={
                'ordering': ['-pk'],
                'indexes': [models.Index(fields=['merchant', '-created_at'], name='riskdecision_merchant_idx')],
                'constraints': [models.UniqueConstraint(fields=('rule', 'event'), name='riskdecision_rule_event_uniq'), models.CheckConstraint(condition=models.Q(('outcome__in', ['ALLOW', 'SUSPEND', 'ALREADY_SUSPENDED'])), name='riskdecision_outcome_valid')],
            },
        ),
        migrations.CreateModel(
            name='WebhookAttempt',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('number', models.PositiveIntegerField()),
                ('url', models.CharField(max_length=500)),
                ('started_at', models.DateTimeField()),
                ('status_code', models.PositiveSmallIntegerField(blank=True, null=True)),
                ('latency_ms', models.PositiveIntegerField()),
                ('response_excerpt', models.CharField(blank=True, default='', max_length=500)),
                ('error', models.CharField(blank=True, default='', max_length=500)),
                ('delivered', models.BooleanField(default=False)),
                ('event', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='webhook_attempts', to='paycore.outboxevent')),
            ],
            options={
                'ordering': ['event', 'number'],
                'constraints': [models.UniqueConstraint(fields=('event', 'number'), name='webhookattempt_event_number_uniq')],
            },
        ),
    ]
