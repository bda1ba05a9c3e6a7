"""Switchyard settings: read from environment variables only.

Defaults are chosen so that `make run` needs nothing installed: SQLite under
var/, the embedded Redis that the dev stack starts (see devstack/),
and a secret key generated once into var/. Production sets every variable.
"""

from __future__ import annotations

from pathlib import Path

import environ
import plotly
from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE

from switchyard.private_files import REDIS_PASSWORD_FILE, VAR_DIR, local_secret

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="") or local_secret(VAR_DIR / "secret_key")
# Provider API keys stored in the database are encrypted with this key. It is
# separate from SECRET_KEY so that rotating SECRET_KEY does not lose them.
SWITCHYARD_ENCRYPTION_KEY = env.str("SWITCHYARD_ENCRYPTION_KEY", default="") or SECRET_KEY

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # Before staticfiles: servestatic takes over static serving everywhere
    # (runserver included) and registers its configuration checks.
    "servestatic",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "adminsortable2",
    "csp",
    "routing",
    "billing",
    "playground",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    # After servestatic: static files need no policy.
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "switchyard.urls"
ASGI_APPLICATION = "switchyard.asgi.application"

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
            "libraries": {"csp_nonce": "switchyard.csp_nonce"},
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'switchyard.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Django's backend, creating the database file 0600 (switchyard/sqlite3/base.py).
    DATABASES["default"]["ENGINE"] = "switchyard.sqlite3"
    # A worker's booking threads and the web server write concurrently; WAL
    # plus a busy timeout keeps "database is locked" away. The test database is a file
    # (not in-memory) so that worker threads and a uvicorn subprocess share it.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            # Seconds a write waits for another writer's lock before it fails.
            "timeout": env.float("SWITCHYARD_SQLITE_BUSY_TIMEOUT", default=20),
            # NORMAL is durable across application crashes in WAL mode and
            # spares an fsync per commit (one usage record per call).
            # Every thread that touches the database holds a connection: cap
            # each one's page cache at 1 MiB rather than SQLite's 2 MiB default.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-1024;",
            "transaction_mode": "IMMEDIATE",
        }
    )
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=600)
    # SWITCHYARD_TEST_DB lets two suites run side by side in one checkout.
    DATABASES["default"]["TEST"] = {"NAME": env.str("SWITCHYARD_TEST_DB", default=str(VAR_DIR / "test.sqlite3"))}
else:
    # Each thread that touches the database (a worker's booking threads, the
    # web's sync views) holds a connection: a pool keeps PostgreSQL's
    # connection count bounded.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env.int("DATABASE_POOL_SIZE", default=20),
        "timeout": 30,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [
    BASE_DIR / "static",
    # plotly.js is served from the plotly package itself, never from a CDN.
    ("plotly", Path(plotly.__file__).parent / "package_data"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # {% static %} links each file under a name that carries its content's hash
    # (plotly.min.<hash>.js), which servestatic serves compressed (brotli or
    # gzip, as the client accepts) and cacheable for good. collectstatic, which
    # `make run`, `make test` and the Docker build run, writes them; with DEBUG
    # on, servestatic serves the sources themselves, under their plain names.
    "staticfiles": {"BACKEND": "switchyard.staticfiles.Storage"},
}
SERVESTATIC_AUTOREFRESH = DEBUG

# Redis: shared state (call event streams, run leases, spend counters, caches) and the Celery broker.
# When REDIS_URL is unset the dev stack starts an embedded redis-server on
# this port (see devstack/), which requires the password it generated into var/.
EMBEDDED_REDIS_PORT = env.int("SWITCHYARD_REDIS_PORT", default=6380)


def _embedded_redis_url() -> str:
    auth = f":{REDIS_PASSWORD_FILE.read_text().strip()}@" if REDIS_PASSWORD_FILE.exists() else ""
    return f"redis://{auth}127.0.0.1:{EMBEDDED_REDIS_PORT}/0"


REDIS_URL = env.str("REDIS_URL", default="") or _embedded_redis_url()

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
# kombu's Redis transport, minus a new redis-py client per acknowledgement.
CELERY_BROKER_TRANSPORT = "fastpath.broker.Transport"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Kombu puts a task back in the queue when it stays unacknowledged this long
# (its worker died). A redelivered call that is still running elsewhere is
# recognised by its run lease (routing/calls/stream.py) and waits for it, so
# the timeout need not exceed the longest call: it is how long a crashed
# call waits before another worker picks it up.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=300),
    "unacked_restore_interval": env.int("CELERY_UNACKED_RESTORE_INTERVAL", default=5),
    "unacked_restore_throttle": 1,
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery beat (started by `make run` and docker-compose) runs these.
CELERY_BEAT_SCHEDULE = {
    "reconcile-spend": {
        "task": "billing.reconcile_spend",
        "schedule": env.float("SWITCHYARD_RECONCILE_SECONDS", default=60.0),
        # A run that waited longer than the next one would is dropped, not queued behind it.
        "options": {"expires": env.float("SWITCHYARD_RECONCILE_SECONDS", default=60.0)},
    },
    # For routes whose strategy orders models by recent latency or failures (routing/model_health.py).
    "measure-model-health": {
        "task": "routing.measure_model_health",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    # For routes whose strategy reads the arena's votes (routing/strategies/quality.py); after a flushed Redis too.
    "publish-arena-standings": {
        "task": "playground.publish_standings",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
}
# Celery's Django fix-up closes the thread's database connection after every
# task unless told otherwise. On SQLite that is a reconnect per call (~1 ms):
# keep it. On PostgreSQL closing returns the connection to the pool: do it.
CELERY_DB_REUSE_MAX = 1000 if DATABASES["default"]["ENGINE"].endswith("sqlite3") else 0

# /v1 refuses larger request bodies before parsing them (images travel inline).
API_MAX_BODY_BYTES = env.int("SWITCHYARD_MAX_BODY_BYTES", default=20 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES

# How a request must arrive at the web server (switchyard/server.py), on every
# path. Its headers: within this many seconds of its first byte (of the
# connection's opening, for a connection's first request), and no larger than
# this many bytes (request line included). Its body: within this many seconds
# of the end of the headers; past either deadline the server answers 408 and
# closes the connection.
HTTP_HEADER_TIMEOUT_SECONDS = env.float("SWITCHYARD_HEADER_TIMEOUT", default=10)
HTTP_MAX_HEADER_BYTES = env.int("SWITCHYARD_MAX_HEADER_BYTES", default=64 * 1024)
HTTP_BODY_TIMEOUT_SECONDS = env.float("SWITCHYARD_BODY_TIMEOUT", default=30)

# Threads of a worker that book its calls and make its few reads
# (routing/calls/db_lane.py): each holds a database connection. Besides them,
# only a reload of the registry (through asgiref's thread) reads the database.
WORKER_DB_THREADS = env.int("SWITCHYARD_WORKER_DB_THREADS", default=4)

# How long a crashed worker's call stays claimed before another may recover
# it, and holds its reservation against its caller's caps.
CALL_RUN_LEASE_SECONDS = env.int("SWITCHYARD_RUN_LEASE_SECONDS", default=15)

# How long a capped call's reservation lasts while it waits for a worker
# (billing/caps/reservations.py). A call that waits longer is reserved again
# by the worker that takes it, and refused then if its caps have no room left.
RESERVATION_QUEUE_SECONDS = env.int("SWITCHYARD_RESERVATION_QUEUE_SECONDS", default=120)

# Answer text that arrives within this many milliseconds of the last text the
# worker published goes out together, as one event: each event costs an XADD in
# the worker and a wake-up and an SSE write in the web process, and a model can
# send a token every few ms. The first text of a call is never held. 0 = none.
STREAM_COALESCE_MS = env.int("SWITCHYARD_STREAM_COALESCE_MS", default=25)

# While calls reach a web process faster than one per push to the queue, the
# first call of a push waits this long for more to share its task message
# (routing/calls/dispatch.py). 0 = never wait; a call alone never waits.
DISPATCH_LINGER_MS = env.int("SWITCHYARD_DISPATCH_LINGER_MS", default=10)

# The response cache (routing/resilience/cache.py): how long an answer lasts
# when a request asks for the cache on a route that has it off (or a model);
# and how long an identical call waits for the first one's answer before it
# runs itself, which is also how long a dead worker's claim holds the key.
CACHE_DEFAULT_TTL_SECONDS = env.int("SWITCHYARD_CACHE_TTL", default=3600)
CACHE_CLAIM_LEASE_SECONDS = env.float("SWITCHYARD_CACHE_CLAIM_LEASE", default=30.0)

# A provider call never runs longer than this, whatever its chain.
CALL_DEADLINE_SECONDS = env.int("SWITCHYARD_CALL_DEADLINE", default=600)

# A call that has shown no sign of life in Redis (queued, running or
# answering) this long after its push is looked for, and pushed again if
# its task message was lost (routing/calls/watchdog.py).
CALL_SIGN_OF_LIFE_SECONDS = env.float("SWITCHYARD_CALL_SIGN_OF_LIFE", default=3.0)

# How long a worker keeps trying to insert a call's record while the
# database refuses it (locked, restarting) before it gives the task message
# back to the queue unacknowledged (routing/calls/booking.py).
BOOKING_RETRY_SECONDS = env.int("SWITCHYARD_BOOKING_RETRY_SECONDS", default=300)

# Served over HTTPS, cookies are secure whether DEBUG is on or not.
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=env.bool("HTTPS", default=False))
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_PROXY", default=False) else None
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Every page's Content-Security-Policy (django-csp; the /v1 API, which serves
# JSON only, does not pass through Django). Scripts and <style> elements come
# from our static files or carry the response's nonce ({{ request.csp_nonce }}
# in a template): no inline handler, no eval. Style attributes stay allowed:
# plotly.js, the admin's scripts and htmx's settling set them.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "style-src-attr": [UNSAFE_INLINE],
        # data: for plotly's image export (the favicon is a static file).
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        # Two lines per task message ("received", "succeeded") at INFO: the
        # web's access log already has a line per call.
        "celery.worker.strategy": {"level": "WARNING"},
        "celery.app.trace": {"level": "WARNING"},
    },
}
