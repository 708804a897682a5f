from django.db import models


class FloorRequest(models.Model):
    body = models.BinaryField()
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"floor #{self.pk}"
