"""What the floor's gunicorn runs: paycore's settings, one app more, and one view for every URL."""

from bench.floor.settings import *  # noqa: F403

ROOT_URLCONF = "bench.floor.urls"
