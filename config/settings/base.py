"""Everything, configured from the environment with development defaults.

With nothing set, paycore runs on SQLite with a broker that needs no server (kombu's
filesystem transport) and the sandbox gateway; production sets DATABASE_URL, REDIS_URL,
SECRET_KEY, FIELD_ENCRYPTION_KEYS and ALLOWED_HOSTS.
"""

from __future__ import annotations

from datetime import timedelta
from importlib.util import find_spec
from pathlib import Path

import dj_database_url

from config.settings.env import env_bool, env_int, env_list, env_str, var_dir

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = var_dir()

DEV_SECRET_KEY = "dev-insecure-paycore-secret-key-change-me"  # refused by a system check when DEBUG is off
SECRET_KEY = env_str("SECRET_KEY", DEV_SECRET_KEY)
DEBUG = env_bool("DEBUG", True)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# --- HTTPS: on by default whenever DEBUG is off (manage.py check --deploy passes clean) -----
# Behind a TLS-terminating load balancer set SECURE_PROXY_SSL_HEADER=true so that Django trusts
# its X-Forwarded-Proto (only ever behind a proxy that sets it).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("SECURE_PROXY_SSL_HEADER", False) else None
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "axes",
    "paycore",
    "channels",
    "orders",
    "payments",
    "refunds",
    "inbox",
    "reconciliation",
    "outbox",
    "schedulers",
]
# Development tooling over the sandbox gateway (demo bootstrap, account provisioning) exists only
# where the sandbox package does; the production image leaves it out.
if DEBUG and find_spec("sandbox") is not None:
    INSTALLED_APPS.append("sandbox.provisioning")

MIDDLEWARE = [
    "paycore.middleware.RequestGuardMiddleware",  # NUL bytes, bad UTF-8, oversize bodies: refused first
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # admin and docs assets under gunicorn
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: it answers a locked-out admin login
]

# Admin logins are throttled (django-axes): after AXES_FAILURE_LIMIT wrong passwords for one
# username from one address, that pair is locked out for the cool-off, right password or not.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 30))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Persistent connections outside DEBUG: opening a PostgreSQL connection costs more than a whole
# callback's work. Health checks drop a connection the server closed before it is reused.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'paycore.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0 if DEBUG else 600),
        conn_health_checks=True,
        # Behind PgBouncer in transaction pooling mode: set DATABASE_CONN_MAX_AGE=0 and this to
        # true (a server-side cursor cannot outlive the transaction the pooler lends a server for,
        # nor can a prepared statement: paycore.statements then sends its SQL as text).
        disable_server_side_cursors=env_bool("DATABASE_DISABLE_SERVER_SIDE_CURSORS", False),
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Every API and callback body is small: anything larger is refused with 413 before a view runs.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 1024 * 1024)

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
WHITENOISE_USE_FINDERS = DEBUG  # development serves app static files without collectstatic

# --- field encryption -------------------------------------------------------------------
# "kid:base64url(32 bytes),kid:..." — the first key encrypts, every key decrypts, so keys can
# rotate: prepend a new key, run `manage.py rotate_field_keys`, then drop the old one.
DEV_FIELD_ENCRYPTION_KEYS = "dev1:ZGV2LW9ubHktcGF5Y29yZS1maWVsZC1rZXktMzJieXQ="
FIELD_ENCRYPTION_KEYS = env_str("FIELD_ENCRYPTION_KEYS", DEV_FIELD_ENCRYPTION_KEYS)

# --- paycore ----------------------------------------------------------------------------
# The base URL channels use to reach paycore's callback endpoints.
PAYCORE_PUBLIC_BASE_URL = env_str("PAYCORE_PUBLIC_BASE_URL", "http://127.0.0.1:8000")
PAYCORE_SANDBOX_URL = env_str("PAYCORE_SANDBOX_URL", "http://127.0.0.1:8100")
ORDER_DEFAULT_TTL_SECONDS = env_int("ORDER_DEFAULT_TTL_SECONDS", 30 * 60)
ORDER_MAX_TTL_SECONDS = env_int("ORDER_MAX_TTL_SECONDS", 7 * 24 * 3600)
# How long one payment (its prepay, order string or approval link) stays payable at the channel.
PAYMENT_TTL_SECONDS = env_int("PAYMENT_TTL_SECONDS", 15 * 60)
# After a payment's expiry, how long the sweeps keep trying to settle it with the channel (and
# how long a close the channel could not confirm is watched) before ops are asked to decide.
PAYMENT_SETTLE_GRACE_SECONDS = env_int("PAYMENT_SETTLE_GRACE_SECONDS", 30 * 60)
# A CLIENT_REPORTED payment the channel still calls unpaid this long after the report goes back
# to PENDING (the report was wrong, or the payer cancelled after all).
CLIENT_REPORT_TRUST_SECONDS = env_int("CLIENT_REPORT_TRUST_SECONDS", 60)
# Payment codes at the counter: how long the payer may take (then the trade is revoked), how
# often the channel is asked meanwhile, how long the API may hold a request waiting for it, and
# how many failed revocations go to a person.
PAYCODE_DEADLINE_SECONDS = env_int("PAYCODE_DEADLINE_SECONDS", 30)
PAYCODE_POLL_SECONDS = env_int("PAYCODE_POLL_SECONDS", 3)
PAYCODE_MAX_WAIT_SECONDS = env_int("PAYCODE_MAX_WAIT_SECONDS", 5)
PAYCODE_MAX_REVOKE_ATTEMPTS = env_int("PAYCODE_MAX_REVOKE_ATTEMPTS", 5)
# Reconciliation: a payment or refund this close to the end of its bill day may be on the next
# day's bill (a trade near midnight, a late notification): held and looked for there, not called
# missing. And how long to wait before asking again for a bill the channel has not published.
RECONCILIATION_HOLD_SECONDS = env_int("RECONCILIATION_HOLD_SECONDS", 30 * 60)
RECONCILIATION_RETRY_SECONDS = env_int("RECONCILIATION_RETRY_SECONDS", 30 * 60)
# Database connections one reconciliation uses at once: a bill's chunks are converted, and its
# payment numbers matched in shares, by this many backends (one core each) beside the run's own.
RECONCILIATION_LOAD_WORKERS = env_int("RECONCILIATION_LOAD_WORKERS", 2)
RECONCILIATION_MATCH_WORKERS = env_int("RECONCILIATION_MATCH_WORKERS", 2)
# Tries of one refund at the channel (each under a new request number) before ops decide.
REFUND_MAX_ATTEMPTS = env_int("REFUND_MAX_ATTEMPTS", 3)
# Tries of one verified notification before it is retired to the ops queue.
INBOX_MAX_ATTEMPTS = env_int("INBOX_MAX_ATTEMPTS", 10)
# How long a web process answers callbacks from its copy of a channel account before reading it
# again (a change of keys, allowlist or enabled state reaches callbacks within this time); 0 reads
# it for every callback.
INBOX_ACCOUNT_CACHE_SECONDS = env_int("INBOX_ACCOUNT_CACHE_SECONDS", 10)
# Networks of the reverse proxies / load balancers in front of paycore (CIDRs, comma-separated).
# Only a request whose peer is in one of them has its X-Forwarded-For read, and then the client
# is the right-most address not in them; otherwise the client is the peer (REMOTE_ADDR). The
# callback IP allowlists check that client address. Empty (the default): nothing is trusted.
PAYCORE_TRUSTED_PROXIES = env_list("PAYCORE_TRUSTED_PROXIES", [])
# How long a process trusts an API key it has verified before reading it again (a deactivation
# made elsewhere reaches it within this time; one made in the process, at once); 0 reads the key
# on every request. last_used_at is written at most once per API_KEY_TOUCH_SECONDS.
API_KEY_CACHE_SECONDS = env_int("API_KEY_CACHE_SECONDS", 5)
API_KEY_TOUCH_SECONDS = env_int("API_KEY_TOUCH_SECONDS", 60)
IDEMPOTENCY_KEY_TTL_SECONDS = env_int("IDEMPOTENCY_KEY_TTL_SECONDS", 24 * 3600)
IDEMPOTENCY_STALE_SECONDS = env_int("IDEMPOTENCY_STALE_SECONDS", 120)
# --- risk rules on the event stream (outbox/services/risk.py, docs/webhooks.md) ---------------
# The velocity rule: a merchant's paid orders over a sliding window, against absolute limits and
# against a multiple of its own baseline (the median day of the previous days, scaled).
RISK_VELOCITY_WINDOW_SECONDS = env_int("RISK_VELOCITY_WINDOW_SECONDS", 10 * 60)
RISK_VELOCITY_MAX_COUNT = env_int("RISK_VELOCITY_MAX_COUNT", 500)
RISK_VELOCITY_MAX_AMOUNT = env_int("RISK_VELOCITY_MAX_AMOUNT", 10_000_000)  # minor units, any currency
RISK_VELOCITY_MAX_AMOUNTS: dict[str, int] = {}  # per currency, where the one limit does not fit (JPY...)
RISK_BASELINE_DAYS = env_int("RISK_BASELINE_DAYS", 7)
RISK_BASELINE_MULTIPLE = env_int("RISK_BASELINE_MULTIPLE", 10)
RISK_BASELINE_MIN_COUNT = env_int("RISK_BASELINE_MIN_COUNT", 30)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["paycore.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["paycore.auth.HasScope"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["paycore.parsers.StrictJSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "paycore.negotiation.ContentNegotiation",
    "DEFAULT_PAGINATION_CLASS": "paycore.api.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "paycore.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "paycore.schema.PaycoreAutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "paycore API",
    "DESCRIPTION": "Orders, payments and refunds for the app backend. Authenticate with "
    "`Authorization: Bearer <api key>`; send `Idempotency-Key` on every POST.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # Swagger UI and Redoc assets ship in drf-spectacular-sidecar: the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

from config.settings.celery import *  # noqa: E402,F403
from config.settings.logging import *  # noqa: E402,F403
