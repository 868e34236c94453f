"""Crowdloop settings, read from the environment (12-factor).

With nothing set, Crowdloop runs on the *embedded default*: SQLite and a Celery broker
on the local file system (kombu's filesystem transport), both under ``CROWDLOOP_DATA_DIR``.
With ``DATABASE_URL`` and ``REDIS_URL`` set, the same code runs on PostgreSQL and Redis.
``CROWDLOOP_ENV=production`` turns on the production hardening and requires a
``SECRET_KEY``.
"""
import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name, default=""):
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


ENVIRONMENT = os.environ.get("CROWDLOOP_ENV", "development").strip().lower()
if ENVIRONMENT not in {"development", "production"}:
    raise ImproperlyConfigured("CROWDLOOP_ENV must be 'development' or 'production'")
PRODUCTION = ENVIRONMENT == "production"

DATA_DIR = Path(os.environ.get("CROWDLOOP_DATA_DIR", BASE_DIR / "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _development_secret_key():
    """A key generated once per checkout and kept in a git-ignored file."""
    path = DATA_DIR / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(64))
    return path.read_text().strip()


SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set when CROWDLOOP_ENV=production")
    SECRET_KEY = _development_secret_key()

DEBUG = False if PRODUCTION else env_bool("DEBUG", default=True)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "" if PRODUCTION else "localhost,127.0.0.1,[::1],testserver")
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when CROWDLOOP_ENV=production")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

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
    "labeling",
]

# Sessions read from the cache, written through to the database: a logged-in request
# costs no session query once warm.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "labeling.outages.ServiceUnavailableMiddleware",
    "labeling.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "labeling.urls"
WSGI_APPLICATION = "labeling.wsgi.application"

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

# --- Database -------------------------------------------------------------------------
SQLITE_PATH = DATA_DIR / "db.sqlite3"
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{SQLITE_PATH}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web server and Celery workers are separate processes writing one file: wait for
    # the lock instead of failing, and keep the test database on disk so that a real
    # worker process can see it.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test_db.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The model backend, reading each request's user together with their worker row.
AUTHENTICATION_BACKENDS = ["labeling.authentication.UserWithWorkerBackend"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Files ----------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", DATA_DIR / "static")).resolve()
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", DATA_DIR / "media")).resolve()

# Upload and import limits: anything above is refused with a clear error.
CROWDLOOP_MAX_UPLOAD_BYTES = int(os.environ.get("CROWDLOOP_MAX_UPLOAD_BYTES", 200 * 1024 * 1024))
CROWDLOOP_MAX_ZIP_UNCOMPRESSED_BYTES = int(
    os.environ.get("CROWDLOOP_MAX_ZIP_UNCOMPRESSED_BYTES", 1024 * 1024 * 1024)
)
CROWDLOOP_MAX_ZIP_ENTRIES = int(os.environ.get("CROWDLOOP_MAX_ZIP_ENTRIES", 200_000))
CROWDLOOP_MAX_IMAGE_PIXELS = int(os.environ.get("CROWDLOOP_MAX_IMAGE_PIXELS", 40_000_000))
CROWDLOOP_MAX_IMAGE_SIDE = int(os.environ.get("CROWDLOOP_MAX_IMAGE_SIDE", 512))
CROWDLOOP_THUMBNAIL_SIDE = int(os.environ.get("CROWDLOOP_THUMBNAIL_SIDE", 128))
CROWDLOOP_MAX_PREDICT_BYTES = int(os.environ.get("CROWDLOOP_MAX_PREDICT_BYTES", 10 * 1024 * 1024))
# Batch predictions: images per request, bytes per request (files or a zip, unpacked).
CROWDLOOP_PREDICT_MAX_BATCH = int(os.environ.get("CROWDLOOP_PREDICT_MAX_BATCH", 1000))
CROWDLOOP_MAX_PREDICT_BATCH_BYTES = int(os.environ.get("CROWDLOOP_MAX_PREDICT_BATCH_BYTES", 100 * 1024 * 1024))
# Loaded models each web process keeps (an LRU keyed by training run).
CROWDLOOP_PREDICT_CACHED_MODELS = int(os.environ.get("CROWDLOOP_PREDICT_CACHED_MODELS", 4))
# CPU threads per prediction call in a web process (torch's intra-op threads).
CROWDLOOP_PREDICT_THREADS = int(os.environ.get("CROWDLOOP_PREDICT_THREADS", 1))
CROWDLOOP_MAX_TEXT_CHARS = int(os.environ.get("CROWDLOOP_MAX_TEXT_CHARS", 20_000))
CROWDLOOP_IMPORT_BATCH_SIZE = int(os.environ.get("CROWDLOOP_IMPORT_BATCH_SIZE", 1000))
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = CROWDLOOP_PREDICT_MAX_BATCH  # Django's default, 100, is below one batch

# --- Redis, Celery, cache ---------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
BROKER_DIR = DATA_DIR / "broker"

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or REDIS_URL or "filesystem://"
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or REDIS_URL or None
# Nothing reads task results (a task's outcome is its rows): none are stored, so a task
# that finishes while Redis is down has nothing to write there.
CELERY_TASK_IGNORE_RESULT = True
# Recovery (README, "Operations"): every task is acknowledged after it ran (acks_late),
# and a worker lost mid-task (kill -9, OOM) leaves its run with a heartbeat that stops.
# After CROWDLOOP_HEARTBEAT_TIMEOUT_S a worker's reaper (at start-up and every
# CROWDLOOP_REAP_INTERVAL_S, no beat needed) queues the run again and it resumes, up to
# CROWDLOOP_RUN_MAX_ATTEMPTS claims. Redis redelivers an unacknowledged task only after
# the visibility timeout, which must exceed the longest hard time limit (else a task
# still running would be delivered twice); the reaper does not wait for it.
CROWDLOOP_HEARTBEAT_TIMEOUT_S = int(os.environ.get("CROWDLOOP_HEARTBEAT_TIMEOUT_S", 120))
CROWDLOOP_HEARTBEAT_INTERVAL_S = float(os.environ.get("CROWDLOOP_HEARTBEAT_INTERVAL_S", 0))  # 0: a quarter of the timeout
CROWDLOOP_REAP_INTERVAL_S = float(os.environ.get("CROWDLOOP_REAP_INTERVAL_S", 30))
CROWDLOOP_RUN_MAX_ATTEMPTS = int(os.environ.get("CROWDLOOP_RUN_MAX_ATTEMPTS", 3))
# Time limits (soft, hard) in seconds, by kind of task.
CROWDLOOP_TASK_LIMITS = {
    "light": (300, 360),
    "import": (1700, 1800),
    "cpu": (1700, 1800),
    "training": (3000, 3300),
}
CELERY_VISIBILITY_TIMEOUT_S = int(os.environ.get("CELERY_VISIBILITY_TIMEOUT_S", 3600))
if not CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT_S}
    CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT_S}
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "labeling.tasks.cpu_*": {"queue": "cpu"},
    "labeling.tasks.gpu_*": {"queue": "gpu"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A broker that cannot be reached fails a send within a second or two; the message stays
# in the outbox (labeling/services/outbox.py) and a worker's flush sends it later.
CELERY_BROKER_CONNECTION_TIMEOUT = float(os.environ.get("CROWDLOOP_BROKER_CONNECTION_TIMEOUT_S", 2))
# One immediate retry (a pooled connection that went stale), then give up.
REDIS_BROKER_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": 1.0, "max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5,
}
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Added to any options set above (a visibility timeout), not instead of them.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        **globals().get("CELERY_BROKER_TRANSPORT_OPTIONS", {}), **REDIS_BROKER_TRANSPORT_OPTIONS
    }
if CELERY_BROKER_URL.startswith("redis://"):
    # kombu's Redis transport, fixed so that a worker survives Redis going away (labeling/broker.py).
    CELERY_BROKER_TRANSPORT = "labeling.broker:Transport"
    CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = 1.0
    CELERY_REDIS_SOCKET_TIMEOUT = 5.0
# How often each worker sends the outbox's messages the broker refused earlier.
CROWDLOOP_OUTBOX_FLUSH_S = float(os.environ.get("CROWDLOOP_OUTBOX_FLUSH_S", 5))
CELERY_BEAT_SCHEDULE = {
    "aggregate-all-projects": {"task": "labeling.tasks.aggregate_all_task", "schedule": 600.0},
    # Optional: every worker reaps on its own (labeling.celery); beat adds nothing needed.
    "reap-lost-runs": {"task": "labeling.tasks.runs_reap_task", "schedule": 120.0},
    "semisupervised-all-projects": {"task": "labeling.tasks.semisupervised_all_task", "schedule": 1800.0},
    "refresh-project-stats": {"task": "labeling.tasks.stats_refresh_all_task", "schedule": 300.0},
}

# The loop's rhythm.
CROWDLOOP_AGGREGATE_EVERY = int(os.environ.get("CROWDLOOP_AGGREGATE_EVERY", 100))
# Consensus after new answers: 0 recomputes it in the request, right after the answer's
# commit (one machine: the embedded default); > 0 defers it to a debounced task on the
# default queue at most this many seconds later, so that the answer path only inserts
# (production: many web processes, workers elsewhere).
CROWDLOOP_CONSENSUS_DEFER_S = float(os.environ.get("CROWDLOOP_CONSENSUS_DEFER_S", 1.0 if PRODUCTION else 0))
# Sites, label lists and quality rules read through the cache live at most this long
# (they are dropped on save; the limit covers writes that send no signal).
CROWDLOOP_HOT_CACHE_S = int(os.environ.get("CROWDLOOP_HOT_CACHE_S", 60))
CROWDLOOP_LEASE_TTL_S = int(os.environ.get("CROWDLOOP_LEASE_TTL_S", 600))
# A semi-supervised round once the new human labels reach this many, or this share of
# the labels the last round saw, whichever is more; a model likewise after each round.
CROWDLOOP_PIPELINE_EVERY_LABELS = int(os.environ.get("CROWDLOOP_PIPELINE_EVERY_LABELS", 8))
CROWDLOOP_ROUND_GROWTH = float(os.environ.get("CROWDLOOP_ROUND_GROWTH", 0.2))
CROWDLOOP_TRAIN_EVERY_LABELS = int(os.environ.get("CROWDLOOP_TRAIN_EVERY_LABELS", 8))
CROWDLOOP_TRAIN_GROWTH = float(os.environ.get("CROWDLOOP_TRAIN_GROWTH", 0.25))
# A CNN competes with the cheap candidates once the human labels reach this many per
# class and this share more than at its last attempt.
CROWDLOOP_CNN_MIN_LABELS_PER_CLASS = int(os.environ.get("CROWDLOOP_CNN_MIN_LABELS_PER_CLASS", 5))
# Text projects use all-MiniLM-L6-v2 sentence embeddings when the optional
# `text-embeddings` extra is installed (0 turns them off); hashed TF-IDF otherwise.
CROWDLOOP_TEXT_EMBEDDINGS = env_bool("CROWDLOOP_TEXT_EMBEDDINGS", default=True)
# Sentence vectors kept per process (384 floats, 1.5 kB each), so that a round does not
# embed again the texts the last one embedded.
CROWDLOOP_TEXT_EMBEDDING_CACHE = int(os.environ.get("CROWDLOOP_TEXT_EMBEDDING_CACHE", 50_000))
CROWDLOOP_CNN_GROWTH = float(os.environ.get("CROWDLOOP_CNN_GROWTH", 0.5))
# A label-noise audit round after each successful training run (see services/audit.py).
CROWDLOOP_AUDIT_AFTER_TRAINING = os.environ.get("CROWDLOOP_AUDIT_AFTER_TRAINING", "1") == "1"

# Redis is reached with short timeouts, so that an unreachable Redis costs a request
# a fraction of a second (then the cache reads as a miss, see labeling/cache.py), not
# the kernel's connect timeout.
REDIS_CONNECT_TIMEOUT_S = float(os.environ.get("CROWDLOOP_REDIS_CONNECT_TIMEOUT_S", 0.5))
REDIS_SOCKET_TIMEOUT_S = float(os.environ.get("CROWDLOOP_REDIS_SOCKET_TIMEOUT_S", 1.0))
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "labeling.cache.ResilientRedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_S,
                "socket_timeout": REDIS_SOCKET_TIMEOUT_S,
                "retry_on_timeout": False,
            },
        }
    }
else:
    # Shared by the web server and the workers of one machine, no server needed. The
    # rate-limit counters have a folder of their own whose live entries are never culled.
    CACHES = {
        "default": {
            "BACKEND": "labeling.cache.FileCache",
            "LOCATION": str(DATA_DIR / "cache"),
            "OPTIONS": {"MAX_ENTRIES": 10_000, "CULL_EVERY_S": 60},
        },
        "ratelimit": {
            "BACKEND": "labeling.cache.FileCache",
            "LOCATION": str(DATA_DIR / "ratelimit"),
            "OPTIONS": {"CULL_EVERY_S": 60, "CULL_EXPIRED_ONLY": True},
        },
    }

# --- Widget, challenges and siteverify ----------------------------------------------------
CROWDLOOP_CHALLENGE_TTL_S = int(os.environ.get("CROWDLOOP_CHALLENGE_TTL_S", 300))
CROWDLOOP_TOKEN_TTL_S = int(os.environ.get("CROWDLOOP_TOKEN_TTL_S", 120))
# Proxies whose X-Forwarded-For is believed (IPs or CIDRs, comma-separated).
CROWDLOOP_TRUSTED_PROXIES = env_list("CROWDLOOP_TRUSTED_PROXIES")
# A visitor whose recent challenges failed this often gets no more (403) for a while.
CROWDLOOP_VISITOR_MAX_STRIKES = int(os.environ.get("CROWDLOOP_VISITOR_MAX_STRIKES", 6))
CROWDLOOP_VISITOR_STRIKE_WINDOW_S = int(os.environ.get("CROWDLOOP_VISITOR_STRIKE_WINDOW_S", 3600))
# Serve each image as a fresh rendering (crop, resampling, noise, new encoding), so that
# no two serves share their bytes. Off only for simulations whose readers need the
# stored bytes.
CROWDLOOP_RENDER_IMAGES = env_bool("CROWDLOOP_RENDER_IMAGES", default=True)
# The rotating control pool: each control item (gold or certain consensus) is served at
# most this often per window and this often in all (then it retires); nobody sees one
# twice. The pool table follows new gold and consensus within the refresh interval.
CROWDLOOP_CONTROL_WINDOW_S = int(os.environ.get("CROWDLOOP_CONTROL_WINDOW_S", 3600))
CROWDLOOP_CONTROL_SERVES_PER_WINDOW = int(os.environ.get("CROWDLOOP_CONTROL_SERVES_PER_WINDOW", 4))
CROWDLOOP_CONTROL_MAX_SERVES = int(os.environ.get("CROWDLOOP_CONTROL_MAX_SERVES", 12))
# Grids and yes/no questions (which retire their control items) only while the control
# pool holds more available items than this; below it, choice questions.
CROWDLOOP_CONTROL_RESERVE = int(os.environ.get("CROWDLOOP_CONTROL_RESERVE", 100))
CROWDLOOP_CONTROL_POOL_REFRESH_S = int(os.environ.get("CROWDLOOP_CONTROL_POOL_REFRESH_S", 60))
# scope: (hits, per seconds). Counted in the cache (Redis in production).
CROWDLOOP_RATE_LIMITS = {
    "challenge-issue:ip": (30, 60),
    "challenge-issue:site": (3000, 60),
    "challenge-answer:ip": (30, 60),
    "challenge-answer:site": (3000, 60),
    "challenge-answer:challenge": (3, 300),
    "challenge-image:ip": (600, 60),
    "siteverify:ip": (600, 60),
    "siteverify:site": (3000, 60),
    "siteverify:challenge": (10, 300),
}
# The accessibility pass (for visitors who cannot see the images): earned once by a
# verified e-mail, valid this long, at most this many passes a day per address and this
# many uses a day per pass. Its verification mail goes through Django's e-mail backend.
CROWDLOOP_A11Y_PASS_TTL_S = int(os.environ.get("CROWDLOOP_A11Y_PASS_TTL_S", 24 * 3600))
CROWDLOOP_A11Y_PASSES_PER_ADDRESS_PER_DAY = int(os.environ.get("CROWDLOOP_A11Y_PASSES_PER_ADDRESS_PER_DAY", 2))
CROWDLOOP_A11Y_USES_PER_DAY = int(os.environ.get("CROWDLOOP_A11Y_USES_PER_DAY", 10))
CROWDLOOP_RATE_LIMITS.update({"a11y-request:ip": (5, 3600), "a11y-use:ip": (20, 3600)})
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Crowdloop <no-reply@localhost>")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", 25))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=False)

# --- Crowd workers (the labeling UI) ------------------------------------------------------
# How long after answering a worker may take an answer back (server-enforced).
CROWDLOOP_UNDO_WINDOW_S = int(os.environ.get("CROWDLOOP_UNDO_WINDOW_S", 10))
# Feedback on a missed control item (when the project allows it) goes only to trusted
# workers: this many control answers, the lower Wilson bound of their accuracy at least
# this, and at most this many explained items a day (an explained item stops being
# control for that worker).
CROWDLOOP_FEEDBACK_MIN_CONTROLS = int(os.environ.get("CROWDLOOP_FEEDBACK_MIN_CONTROLS", 30))
CROWDLOOP_FEEDBACK_MIN_ACCURACY = float(os.environ.get("CROWDLOOP_FEEDBACK_MIN_ACCURACY", 0.8))
CROWDLOOP_FEEDBACK_PER_DAY = int(os.environ.get("CROWDLOOP_FEEDBACK_PER_DAY", 3))
# Most items one `next` call hands out, and most answers one batch may carry.
CROWDLOOP_WORKER_MAX_BATCH = int(os.environ.get("CROWDLOOP_WORKER_MAX_BATCH", 20))
# Items the labeling page keeps fetched ahead of the one on screen.
CROWDLOOP_WORKER_PREFETCH = int(os.environ.get("CROWDLOOP_WORKER_PREFETCH", 6))
CROWDLOOP_RATE_LIMITS.update(
    {
        "worker-next:worker": (120, 60),
        "worker-answer:worker": (240, 60),
        "worker-undo:worker": (30, 60),
        "worker-image:worker": (1200, 60),
        "worker-signup:ip": (10, 3600),
    }
)

# --- API ------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # The token class first: an unauthenticated API request is answered 401, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "labeling.authentication.OwnerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # `?format=` is ours (the export format), not DRF's renderer override.
    "URL_FORMAT_OVERRIDE": None,
    # One place turns the services' errors into responses (labeling/api_errors.py).
    "EXCEPTION_HANDLER": "labeling.api_errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Crowdloop owners' API",
    "DESCRIPTION": "Projects, imports, exports, training runs, models and predictions. "
    "Authenticate with `Authorization: Token <token>` (make one at /accounts/tokens/).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from the installed sidecar package: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "PREPROCESSING_HOOKS": ["labeling.api_schema.owner_endpoints_only"],
    "ENUM_NAME_OVERRIDES": {"SplitEnum": "labeling.models.Split", "DataKindEnum": "labeling.models.DataKind"},
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "project-list"
LOGOUT_REDIRECT_URL = "login"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "labeling": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
        "ml": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    },
}

# --- Production hardening (passes `manage.py check --deploy`) ---------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=True)
    # X-Forwarded-Proto says "https" only when a proxy in front sets it (and strips what
    # clients send); believed only when the operator says such a proxy is there.
    if env_bool("CROWDLOOP_TRUST_PROXY_SSL_HEADER"):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", 31_536_000))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_REFERRER_POLICY = "same-origin"
