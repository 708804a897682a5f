"""paycore: the Django project package and the primitives every app shares."""

from paycore.celery import app as celery_app

__all__ = ["celery_app"]
