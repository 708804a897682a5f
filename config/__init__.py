"""The Django project wiring: settings, urls, the Celery app, wsgi/asgi. Nothing here holds
business logic; it only puts the apps together."""

from config.celery import app as celery_app

__all__ = ["celery_app"]
