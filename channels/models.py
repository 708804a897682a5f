"""Channel accounts: one merchant account at one channel, with its credentials encrypted."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from channels.base import AccountConfig
from channels.registry import CHANNEL_CODES
from paycore.fields import EncryptedJSONField
from paycore.models import TimeStampedModel


class Channel(models.TextChoices):
    WECHAT = "wechat", "WeChat Pay"
    ALIPAY = "alipay", "Alipay"
    PAYPAL = "paypal", "PayPal"
    POINTS = "points", "Partner points"


assert {c.value for c in Channel} == set(CHANNEL_CODES), "Channel choices and the registry disagree"


class ChannelAccount(TimeStampedModel):
    channel = models.CharField(max_length=20, choices=Channel)
    name = models.CharField(max_length=100, unique=True)
    base_url = models.URLField(max_length=300)
    ids = models.JSONField(default=dict, blank=True)  # app id, merchant id... (not secret)
    credentials = EncryptedJSONField(default=dict, blank=True)  # private keys, API keys (secret)
    options = models.JSONField(default=dict, blank=True)  # public keys, certificates, switches
    is_enabled = models.BooleanField(default=True)
    callback_ip_allowlist = models.JSONField(default=list, blank=True)  # empty: any address

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(channel__in=list(CHANNEL_CODES)), name="channelaccount_channel_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.channel})"

    def as_config(self) -> AccountConfig:
        return AccountConfig(
            channel=self.channel,
            account_id=self.pk,
            base_url=self.base_url.rstrip("/"),
            ids=dict(self.ids),
            credentials=dict(self.credentials),
            options=dict(self.options),
        )

    @property
    def points_at_sandbox(self) -> bool:
        from django.conf import settings

        return self.base_url.startswith(settings.PAYCORE_SANDBOX_URL.rstrip("/"))
