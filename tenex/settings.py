"""Settings, all from the environment (see README's table)."""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from tenex.env import (
    check_redis_url,
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_rate,
    env_str,
    parse_database_url,
    read_secret_file,
)
from tenex.redis_clients import is_cluster

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("TENEX_DATA_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DJANGO_DEBUG", False)
TESTING = "pytest" in sys.modules or env_bool("TENEX_TESTING", False)

# The key: DJANGO_SECRET_KEY, else the one `scripts/serve` keeps in TENEX_DATA_DIR/secret_key, so
# every `manage.py` command run beside a served instance signs with the same key.
SECRET_KEY_FILE = DATA_DIR / "secret_key"
SECRET_KEY = env_str("DJANGO_SECRET_KEY") or read_secret_file(SECRET_KEY_FILE)
if not SECRET_KEY:
    if DEBUG or TESTING:
        SECRET_KEY = "insecure-development-key-only-for-debug-and-tests"
    else:
        raise ImproperlyConfigured(
            f"DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off, or {SECRET_KEY_FILE} exist "
            "(`scripts/serve` creates it for the embedded default)."
        )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc served from here: the docs work offline
    "channels",
    "workspaces",
    "knowledge",
    "agents",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "tenex.middleware.DatabaseUnavailableMiddleware",  # last: the first to see a view's exception
]

ROOT_URLCONF = "tenex.urls"
APPEND_SLASH = False

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

WSGI_APPLICATION = "tenex.wsgi.application"
ASGI_APPLICATION = "tenex.asgi.application"

# --- Database -------------------------------------------------------------------------------
# Every thread that can hold a database connection, so the pool never makes one wait on another:
# requests' synchronous part (middleware and view, tenex/handler.py), the generation runtime's
# database steps and its tools, and the streams' checks of their message row.
TENEX_REQUEST_THREADS = env_int("TENEX_REQUEST_THREADS", 16, minimum=1)
TENEX_GENERATION_DB_THREADS = env_int("TENEX_GENERATION_DB_THREADS", 8, minimum=1)
TENEX_TOOL_THREADS = env_int("TENEX_TOOL_THREADS", 4, minimum=1)
TENEX_STREAM_DB_THREADS = env_int("TENEX_STREAM_DB_THREADS", 4, minimum=1)
# ...plus one for the MCP server's calls (one thread, Channels' thread-sensitive executor) and one
# for the hourly cleanup of unattached uploads (chat/files.py).
DATABASE_THREADS = (
    TENEX_REQUEST_THREADS + TENEX_GENERATION_DB_THREADS + TENEX_TOOL_THREADS + TENEX_STREAM_DB_THREADS + 2
)
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    _db = parse_database_url(DATABASE_URL)
    # Django's backend, its pooled waits cut short once PostgreSQL is known down (tenex.database_breaker).
    _db["ENGINE"] = "tenex.postgresql"
    # A server that does not answer (a dropped route rather than a refused port) fails a connection
    # attempt after this long instead of libpq's default of none (2 s is libpq's least).
    _db["OPTIONS"]["connect_timeout"] = TENEX_DB_CONNECT_TIMEOUT = env_int("TENEX_DB_CONNECT_TIMEOUT", 2, minimum=2)
    # Pooled by default; the test suite opens and drops databases, so it does without.
    if env_bool("TENEX_DB_POOL", not TESTING):
        from tenex.database_breaker import WAIT_SLICE_SECONDS, breaker

        # The longest a request waits for a pooled connection while PostgreSQL is not known down.
        TENEX_DB_POOL_TIMEOUT = env_int("TENEX_DB_POOL_TIMEOUT", 10, minimum=1)
        _db["OPTIONS"]["pool"] = {
            "min_size": env_int("TENEX_DB_POOL_MIN", 1, minimum=0),
            "max_size": env_int("TENEX_DB_POOL_MAX", DATABASE_THREADS, minimum=1),
            "timeout": WAIT_SLICE_SECONDS,
            # A connection the pool cannot open is not retried in the background: the breaker opens
            # and probes, and the next request after the probe succeeds opens one at once.
            "reconnect_timeout": 0,
            "reconnect_failed": breaker.reconnect_failed,
        }
    else:
        _db["CONN_MAX_AGE"] = env_int("TENEX_DB_CONN_MAX_AGE", 0 if TESTING else 60, minimum=0)
    _db["CONN_HEALTH_CHECKS"] = True
    # Parameters bound by the server (the extended query protocol), not quoted into the SQL by
    # psycopg. Statements are not prepared (Django leaves psycopg's prepare_threshold off), so every
    # statement is planned anew, and any pooler in front of PostgreSQL works.
    _db["OPTIONS"]["server_side_binding"] = env_bool("TENEX_DB_SERVER_SIDE_BINDING", True)
    # One test database per test run, so parallel runs on one server never collide.
    _db["TEST"] = {"NAME": env_str("TENEX_TEST_DATABASE_NAME", f"test_{_db['NAME']}_{os.getpid()}")}
    DATABASES = {"default": _db}
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("TENEX_SQLITE_PATH", str(DATA_DIR / "tenex.sqlite3")),
            # The generation worker writes from its own threads; wait for the lock rather than fail.
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "workspaces.User"

# --- Redis ------------------------------------------------------------------------------------
# Stream logs, cancel signals, leases and shared counters; no Channels channel layer: nothing sends
# through one (cancels need a mark that outlives a lost notice, and channels_redis has no Redis
# Cluster support).
REDIS_URL = env_str("REDIS_URL")
# The streams' keys that every process of one deployment shares (the leases the sweep reads, the
# cancel channel) are named under this prefix, so deployments, or test runs each on a database of
# its own, can share one Redis without ending or cancelling each other's replies.
TENEX_REDIS_PREFIX = env_str("TENEX_REDIS_PREFIX", f"tenex:test-{os.getpid()}" if TESTING else "tenex")
if REDIS_URL:
    check_redis_url(REDIS_URL)
REDIS_CLUSTER = bool(REDIS_URL) and is_cluster(REDIS_URL)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
MEDIA_ROOT = Path(env_str("TENEX_MEDIA_ROOT", str(DATA_DIR / "media")))

LOGIN_URL = "/login"
LOGIN_REDIRECT_URL = "/chat/"

# Request bodies: JSON bodies are small; uploads are bounded by TENEX_MAX_UPLOAD_BYTES.
TENEX_MAX_UPLOAD_BYTES = env_int("TENEX_MAX_UPLOAD_BYTES", 10 * 1024 * 1024, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("TENEX_MAX_BODY_BYTES", 2 * 1024 * 1024, minimum=1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "workspaces.authentication.ApiKeyAuthentication",
        "workspaces.authentication.SessionScopeAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["workspaces.permissions.HasScope"],
    "DEFAULT_PARSER_CLASSES": ["workspaces.parsers.JSONParser"],  # UTF-8 always, nesting bounded
    "DEFAULT_METADATA_CLASS": "workspaces.parsers.Metadata",
    "URL_FORMAT_OVERRIDE": None,  # `?format=` is no switch of the API (the schema view keeps its own)
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "workspaces.openapi.TenexAutoSchema",
    "EXCEPTION_HANDLER": "workspaces.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DATETIME_FORMAT": "%Y-%m-%dT%H:%M:%S.%fZ",
    "DEFAULT_THROTTLE_CLASSES": ["workspaces.throttling.ApiKeyRateThrottle"],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "tenex chat API",
    "DESCRIPTION": (
        "Threads, messages and streamed assistant replies for workspaces. "
        "Authenticate with `Authorization: Bearer tnx_...`. Every error has the shape "
        '`{"error": {"code", "message", "fields"}}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "APPEND_COMPONENTS": {
        "securitySchemes": {"BearerKey": {"type": "http", "scheme": "bearer", "bearerFormat": "tnx_..."}}
    },
    "SECURITY": [{"BearerKey": []}],
    "ENUM_NAME_OVERRIDES": {},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "workspaces.openapi.postprocess",
        "agents.openapi.postprocess",
        "chat.openapi.postprocess",
    ],
    # The docs pages' assets come from drf-spectacular-sidecar (pinned), never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": False, "displayOperationId": False},
}

# --- Security: rate limits, login throttling, HTTPS, Content-Security-Policy --------------------
# Counters every process must share (rate limits, failed sign-ins) live in the default cache:
# Redis with REDIS_URL, in-process otherwise (the embedded default is one process).
TENEX_CACHE_PREFIX = env_str("TENEX_CACHE_PREFIX", "tenex:cache")
if REDIS_URL:
    CACHES = {
        "default": {
            # A cluster: Django's Redis cache over redis-py's cluster client (workspaces/compat.py).
            "BACKEND": "workspaces.compat.RedisClusterCache"
            if REDIS_CLUSTER
            else "django.core.cache.backends.redis.RedisCache",
            "LOCATION": [REDIS_URL] if REDIS_CLUSTER else REDIS_URL,  # a list: a cluster URL may hold commas
            "KEY_PREFIX": TENEX_CACHE_PREFIX,
            # A Redis that stops answering costs a request at most this long (limits then fail open).
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "KEY_PREFIX": TENEX_CACHE_PREFIX}}

TENEX_RATE_LIMIT = env_rate("TENEX_RATE_LIMIT", "6000/min")
# Requests that fail authentication (every 401: no key, malformed, unknown, revoked or expired),
# per client address; past it they answer 429 and well-formed keys are not even looked up.
TENEX_ANON_RATE_LIMIT = env_rate("TENEX_ANON_RATE_LIMIT", "120/min")
# Proxies in front of the service that append to X-Forwarded-For (0: use REMOTE_ADDR).
TENEX_TRUSTED_PROXY_COUNT = env_int("TENEX_TRUSTED_PROXY_COUNT", 0, minimum=0)

# Sign-in throttling (django-axes; workspaces/login_throttle.py): failures per account and per
# client address, counted in the cache above; its backend runs first and refuses locked attempts
# before any password is checked. The API's keys and sessions never go through authenticate().
INSTALLED_APPS += ["axes"]
MIDDLEWARE.insert(MIDDLEWARE.index("tenex.middleware.DatabaseUnavailableMiddleware"), "axes.middleware.AxesMiddleware")
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_HANDLER = "workspaces.login_throttle.LoginAttemptHandler"
AXES_FAILURE_LIMIT = env_int("TENEX_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("TENEX_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one past the limit locks
AXES_RESET_ON_SUCCESS = True
AXES_USERNAME_CALLABLE = "workspaces.login_throttle.login_account"
AXES_CLIENT_IP_CALLABLE = "workspaces.ratelimit.client_address"
AXES_LOCKOUT_CALLABLE = "workspaces.login_throttle.lockout_response"
AXES_ENABLE_ADMIN = False  # the cache handler keeps no attempt rows to show

# Production behind TLS: the proxy terminates it and says so in X-Forwarded-Proto (it must
# overwrite any the client sent). Plain-HTTP requests are redirected to HTTPS, except the health
# checks a load balancer makes over plain HTTP.
TENEX_HTTPS = env_bool("TENEX_HTTPS", False)
if TENEX_HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_HSTS_SECONDS = env_int("TENEX_HSTS_SECONDS", 365 * 24 * 3600, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("TENEX_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("TENEX_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# Content-Security-Policy on every response (django-csp, through tenex/csp.py): scripts, styles
# and everything else only from this server (no inline script or style: the web UI, the admin and
# Swagger UI load theirs as files), images also as data: URIs (Swagger UI's icons), never framed.
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1, "tenex.csp.ContentSecurityPolicyMiddleware"
)
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# --- Assistant ---------------------------------------------------------------------------------
TENEX_LLM_PROVIDER = env_choice("TENEX_LLM_PROVIDER", "local", {"local", "openai", "anthropic"})
TENEX_LLM_MODEL = env_str("TENEX_LLM_MODEL", "")
TENEX_LLM_TIMEOUT_SECONDS = env_int("TENEX_LLM_TIMEOUT_SECONDS", 60, minimum=1)
TENEX_LLM_MAX_RETRIES = env_int("TENEX_LLM_MAX_RETRIES", 2, minimum=0)
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL", "")
OPENAI_API_KEY = env_str("OPENAI_API_KEY", "")
ANTHROPIC_BASE_URL = env_str("ANTHROPIC_BASE_URL", "")
ANTHROPIC_API_KEY = env_str("ANTHROPIC_API_KEY", "")
TENEX_LOCAL_TOKEN_DELAY_MS = env_int("TENEX_LOCAL_TOKEN_DELAY_MS", 15, minimum=0)
TENEX_HISTORY_TOKEN_BUDGET = env_int("TENEX_HISTORY_TOKEN_BUDGET", 6000, minimum=100)
# How many times a reply may call tools before the provider must answer in text (a constant).
TENEX_MAX_TOOL_ROUNDS = 4
TENEX_TOOLS = env_list(
    "TENEX_TOOLS", ["agents.tools.search_knowledge", "agents.tools.run_agent"]
)

# --- Streams -----------------------------------------------------------------------------------
TENEX_STREAM_LEASE_SECONDS = env_int("TENEX_STREAM_LEASE_SECONDS", 10, minimum=2)
TENEX_STREAM_PING_SECONDS = env_int("TENEX_STREAM_PING_SECONDS", 15, minimum=1)
TENEX_STREAM_TTL_SECONDS = env_int("TENEX_STREAM_TTL_SECONDS", 2 * 24 * 3600, minimum=60)
# Events a reply's Redis stream keeps at most (a constant: a reply's events are far fewer).
TENEX_STREAM_MAXLEN = 100_000
TENEX_STREAM_MIRROR_SECONDS = env_int("TENEX_STREAM_MIRROR_SECONDS", 10, minimum=0)
TENEX_REDIS_MAX_CONNECTIONS = env_int("TENEX_REDIS_MAX_CONNECTIONS", 2000, minimum=10)
TENEX_SWEEP_SECONDS = env_int("TENEX_SWEEP_SECONDS", 5, minimum=1)
TENEX_SHUTDOWN_DRAIN_SECONDS = env_int("TENEX_SHUTDOWN_DRAIN_SECONDS", 10, minimum=0)

# --- Streams through a PostgreSQL outage (chat/stream/endings.py) ---------------------------
# How long a producer retries a reply's final write while PostgreSQL is unreachable: back within
# this, the reply ends as it would have (`complete`, `cancelled`); past it, `failed` with the code
# `database_unavailable` and all its text (written once PostgreSQL is back).
TENEX_STREAM_DB_OUTAGE_SECONDS = env_int("TENEX_STREAM_DB_OUTAGE_SECONDS", 90, minimum=1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("TENEX_LOG_LEVEL", "WARNING")},
}
