"""paycore's settings (the same environment, middleware and database connection settings) plus the
floor's app, for migrating and for the benches' driver process. The floor's server uses
``bench.floor.serve``, where only the URLs (one view) differ from paycore's."""

from config.settings.base import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "bench.floor"]  # noqa: F405
