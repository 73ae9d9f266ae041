"""Settings shared by every environment, read from the environment (12-factor).

Nothing secret has a default here: each environment module decides where its
SECRET_KEY comes from, and production refuses to start without a strong one.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()
if (BASE_DIR / ".env").exists():
    # `make demo` writes .env with generated secrets; real deployments use the environment.
    env.read_env(str(BASE_DIR / ".env"))

DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
TIME_ZONE = "UTC"
USE_TZ = True
LANGUAGE_CODE = "en-us"
USE_I18N = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'tally.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=0)

INSTALLED_APPS = [
    "config.apps.TallyAdminConfig",  # django.contrib.admin, superusers only
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "core",
    "annotation",
    "training",
    "labor_ledger",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
                "frontend.context_processors.project_nav",
            ],
        },
    },
]

# Argon2 first: new and upgraded passwords are hashed with it.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "frontend:home"
LOGOUT_REDIRECT_URL = "login"

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_ROOT = Path(env("TALLY_MEDIA_ROOT", default=str(BASE_DIR / "var" / "media")))

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# --- Redis: Celery broker and the shared cache (import progress, debounce flags) ---
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env("CACHE_KEY_PREFIX", default="tally"),
    }
}

# --- Celery (config/celery_app.py reads every CELERY_* name) ---
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None  # the database rows are the jobs' truth, not task results
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"training.tasks.*": {"queue": "training"}}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Long jobs must finish (or be killed) well before Redis re-delivers an unacked message.
CELERY_BROKER_VISIBILITY_TIMEOUT_S = env.int("CELERY_BROKER_VISIBILITY_TIMEOUT_S", default=3600)
# "priority": a worker consuming several queues polls them in the order of its -Q list every
# time (Redis BRPOP takes the first non-empty list), instead of kombu's default round robin:
# `-Q training,embedding,default` always takes a waiting run before the next embedding chunk.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_BROKER_VISIBILITY_TIMEOUT_S,
    "queue_order_strategy": "priority",
}
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=1800)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 60
CELERY_BEAT_SCHEDULE: dict = {}

# --- DRF and the OpenAPI schema ---
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # DRF's three, with JSON refused past a nesting depth (core/parsers.py; issue 15).
    "DEFAULT_PARSER_CLASSES": [
        "core.parsers.DepthLimitedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Domain errors (core.errors) raised by services become their 4xx answers here.
    "EXCEPTION_HANDLER": "core.exceptions.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_RATES": {"login": "10/min"},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Tally API",
    "DESCRIPTION": "Text annotation with a model in the loop and an honest labor ledger.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI served from our own static files: the docs page works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models have a `status`; name each enum after its model so the schema is stable.
    "ENUM_NAME_OVERRIDES": {
        "AttemptStatusEnum": "annotation.models.Attempt.Status",
        "AnnotationStatusEnum": "annotation.models.Annotation.Status",
        "ImportBatchStatusEnum": "annotation.models.ImportBatch.Status",
        "LedgerEntryKindEnum": "labor_ledger.models.LedgerEntry.Kind",
        "TimeCategoryEnum": "labor_ledger.models.TimeCategory",
        "ClockEnum": "labor_ledger.models.Clock",
        "ModelKindEnum": "training.models.ModelKind",
        "TrainingLoopEnum": "training.models.Loop",
        "PriorityReasonEnum": "annotation.models.PriorityReason",
    },
}

# --- Tally ---
# How long a claimed example stays reserved for one annotator before it returns to the pool.
TALLY_CLAIM_LEASE_SECONDS = env.int("TALLY_CLAIM_LEASE_SECONDS", default=600)
# The page sends a heartbeat every few seconds while the tab is visible and the annotator
# active; a gap longer than this between two heartbeats is idle time and is not counted.
TALLY_HEARTBEAT_INTERVAL_SECONDS = 5
TALLY_HEARTBEAT_MAX_GAP_SECONDS = env.int("TALLY_HEARTBEAT_MAX_GAP_SECONDS", default=10)
TALLY_IDLE_CUTOFF_SECONDS = 30
# How many open claims one annotator may hold at once (the current text and one prefetched).
TALLY_MAX_OPEN_CLAIMS = 2
TALLY_MAX_TEXT_LENGTH = env.int("TALLY_MAX_TEXT_LENGTH", default=20_000)
TALLY_MAX_UPLOAD_BYTES = env.int("TALLY_MAX_UPLOAD_BYTES", default=512 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# Every other request's body, and the login pages' (anyone may post there); refused with 413
# from Content-Length before the body is read (core/middleware.py). Imports take the upload limit.
TALLY_MAX_REQUEST_BYTES = env.int("TALLY_MAX_REQUEST_BYTES", default=DATA_UPLOAD_MAX_MEMORY_SIZE + 1024 * 1024)
TALLY_MAX_LOGIN_REQUEST_BYTES = env.int("TALLY_MAX_LOGIN_REQUEST_BYTES", default=64 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}

# --- frontend: Content-Security-Policy (frontend/middleware.py); no inline script anywhere ---
MIDDLEWARE.insert(1, "frontend.middleware.ContentSecurityPolicyMiddleware")
# Request size limits from Content-Length, before anything reads the body (issue 15).
MIDDLEWARE.insert(1, "core.middleware.RequestSizeLimitMiddleware")
MIDDLEWARE.insert(2, "core.middleware.NulInQueryMiddleware")  # a NUL filter would be a database error

# --- Import (annotation/imports/, docs/import.md) ---
# Rows per bulk INSERT and per duplicate-check query; progress is published once per chunk.
TALLY_IMPORT_CHUNK_ROWS = env.int("TALLY_IMPORT_CHUNK_ROWS", default=2000)
# The per-row report keeps this many entries (counts by reason stay exact in ImportBatch.stats).
TALLY_IMPORT_REPORT_LIMIT = env.int("TALLY_IMPORT_REPORT_LIMIT", default=1000)
# Longest line, never held in memory whole: a longer JSONL line is skipped, a longer CSV line fails.
TALLY_IMPORT_MAX_LINE_BYTES = env.int("TALLY_IMPORT_MAX_LINE_BYTES", default=4 * 1024 * 1024)
TALLY_IMPORT_PROGRESS_TTL_SECONDS = 24 * 3600
# A running import whose progress has not moved for this long is shown as stalled.
TALLY_IMPORT_STALL_SECONDS = env.int("TALLY_IMPORT_STALL_SECONDS", default=300)

# --- Labor ledger (labor_ledger/, docs/ledger.md) ---
# Keyed MAC over every ledger entry (labor_ledger/chain.py; issue 15): the key never lives in
# the database. TALLY_LEDGER_MAC_KEY, or a file holding it (TALLY_LEDGER_MAC_KEY_FILE, e.g. a
# Docker secret); earlier keys, comma-separated, in TALLY_LEDGER_MAC_OLD_KEYS (verify only).
# Each environment module decides the default: production refuses to start without one.
TALLY_LEDGER_MAC_KEY_FILE = env("TALLY_LEDGER_MAC_KEY_FILE", default="")
TALLY_LEDGER_MAC_KEY = (
    Path(TALLY_LEDGER_MAC_KEY_FILE).read_text().strip()
    if TALLY_LEDGER_MAC_KEY_FILE
    else env("TALLY_LEDGER_MAC_KEY", default="")
)
TALLY_LEDGER_MAC_OLD_KEYS = env.list("TALLY_LEDGER_MAC_OLD_KEYS", default=[])
# Signed checkpoints of each project's chain head (labor_ledger/checkpoints.py; issue 15): an
# Ed25519 private key (PEM, or 32 bytes in base64) in TALLY_CHECKPOINT_SIGNING_KEY or a file
# (TALLY_CHECKPOINT_SIGNING_KEY_FILE), never in the database. No default: without one,
# checkpoints are not written and verify_ledger says so. Public keys of earlier signing keys
# (base64 of the 32 raw bytes), comma-separated, in TALLY_CHECKPOINT_OLD_PUBLIC_KEYS.
TALLY_CHECKPOINT_SIGNING_KEY_FILE = env("TALLY_CHECKPOINT_SIGNING_KEY_FILE", default="")
TALLY_CHECKPOINT_SIGNING_KEY = (
    Path(TALLY_CHECKPOINT_SIGNING_KEY_FILE).read_text().strip()
    if TALLY_CHECKPOINT_SIGNING_KEY_FILE
    else env("TALLY_CHECKPOINT_SIGNING_KEY", default="")
)
TALLY_CHECKPOINT_OLD_PUBLIC_KEYS = env.list("TALLY_CHECKPOINT_OLD_PUBLIC_KEYS", default=[])
# Every checkpoint is also appended (JSON lines) to ledger-checkpoints.jsonl in this directory,
# which should be one the database's owner cannot write (another host, an append-only mount);
# empty: no witness file.
TALLY_CHECKPOINT_DIR = env("TALLY_CHECKPOINT_DIR", default="")
# How often the beat task signs every head that moved (seconds).
TALLY_CHECKPOINT_SECONDS = env.float("TALLY_CHECKPOINT_SECONDS", default=3600.0)
# Settlement period: "day" (UTC days, the default) or "week" (ISO weeks, Monday 00:00 UTC).
TALLY_LEDGER_PERIOD = env("TALLY_LEDGER_PERIOD", default="day")
# A gap between two tasks up to this long is unpaid time "between tasks" of one work session;
# a longer one is a break and is not recorded.
TALLY_LEDGER_SESSION_GAP_SECONDS = env.int("TALLY_LEDGER_SESSION_GAP_SECONDS", default=300)
# Close complete periods (floor top-ups, rounding) every hour; settling is idempotent.
CELERY_BEAT_SCHEDULE["labor-ledger-settle-due"] = {"task": "labor_ledger.settle_due", "schedule": 3600.0}
CELERY_BEAT_SCHEDULE["labor-ledger-checkpoint-heads"] = {
    "task": "labor_ledger.checkpoint_heads",
    "schedule": TALLY_CHECKPOINT_SECONDS,
}
# Claims past their lease and readings gone quiet close in the background (annotation's own task).
CELERY_BEAT_SCHEDULE["annotation-expire-claims"] = {"task": "annotation.expire_claims", "schedule": 60.0}

# --- Training: the model in the loop (training/, issue #3; docs/training.md) ---
# auto: cuda when torch sees a GPU, else cpu. cpu or cuda force one (cuda without a GPU fails the run).
TALLY_TRAINING_DEVICE = env("TALLY_TRAINING_DEVICE", default="auto")
# Embedding and fine-tuning threads; 0 (default): every core (os.cpu_count()). Small models use 1.
TALLY_TRAINING_THREADS = env.int("TALLY_TRAINING_THREADS", default=0)
# Weights (safetensors) are written here and loaded from nowhere else.
TALLY_MODEL_STORE = Path(env("TALLY_MODEL_STORE", default=str(BASE_DIR / "var" / "models")))
# Texts per background embedding task: a run waiting on a worker that serves both queues waits
# for at most one chunk (64 long texts: about 6 s on two cores; docs/training.md).
TALLY_EMBED_CHUNK_SIZE = env.int("TALLY_EMBED_CHUNK_SIZE", default=64)
# A run embeds its labeled texts and this many of the next texts the queue hands out, so the
# first model never waits for the pool and scores what annotators see next.
TALLY_EMBED_QUEUE_HEAD = env.int("TALLY_EMBED_QUEUE_HEAD", default=32)
# bf16 autocast for embedding on the CPU: auto (only where the CPU has native bf16, AVX512-BF16
# or AMX, and a probe at first use finds it faster), on, off. Always on a GPU.
TALLY_EMBED_BF16 = env("TALLY_EMBED_BF16", default="auto")
# The pool's embedding has its own queue: a run never waits behind it (docs/training.md).
CELERY_TASK_ROUTES = {"training.tasks.embed_chunk": {"queue": "embedding"}, **CELERY_TASK_ROUTES}
# Memory one training run may need (model, gradients, optimiser state, a batch), estimated from
# the hyper-parameters (training/memory.py): settings over it are refused with a 400 (issue 15).
TALLY_TRAINING_MEMORY_BUDGET_MB = env.int("TALLY_TRAINING_MEMORY_BUDGET_MB", default=4096)
# Explanations are interactive: they must not wait behind a long training run.
CELERY_TASK_ROUTES = {"training.tasks.explain_prediction": {"queue": "default"}, **CELERY_TASK_ROUTES}
# The cold start's order (training/coldstart.py) is seconds of numpy: never behind a run.
CELERY_TASK_ROUTES = {"training.tasks.cold_start": {"queue": "default"}, **CELERY_TASK_ROUTES}

# --- Security (tests/security, docs/security-operations.md) ---
# Failed logins per username and client address before that pair is locked out for the
# window (frontend/login.py: the login page and the admin's).
TALLY_LOGIN_MAX_FAILURES = env.int("TALLY_LOGIN_MAX_FAILURES", default=5)
TALLY_LOGIN_LOCKOUT_SECONDS = env.int("TALLY_LOGIN_LOCKOUT_SECONDS", default=15 * 60)
# The sweeper re-sends training runs whose broker message was lost (training.services.runs_resend_lost).
TALLY_TRAINING_RESEND_AFTER_SECONDS = env.int("TALLY_TRAINING_RESEND_AFTER_SECONDS", default=120)
TALLY_TRAINING_SWEEP_SECONDS = env.float("TALLY_TRAINING_SWEEP_SECONDS", default=60.0)
CELERY_BEAT_SCHEDULE["training-sweep-lost-runs"] = {
    "task": "training.tasks.sweep_lost_runs",
    "schedule": TALLY_TRAINING_SWEEP_SECONDS,
}
# The sweeper is quick: it must not wait behind a long run on the training queue.
CELERY_TASK_ROUTES = {"training.tasks.sweep_lost_runs": {"queue": "default"}, **CELERY_TASK_ROUTES}

# --- Labor Card and auditor reports (labor_ledger/reports/, docs/labor-card.md) ---
# Key for annotator pseudonyms (HMAC-SHA256) in reports, exports and charts. Kept apart from
# SECRET_KEY and from the data; required for pseudonymized exports (a clear error without it).
TALLY_PSEUDONYM_KEY = env("TALLY_PSEUDONYM_KEY", default="")
# Energy estimate when a model version recorded no measured power: watts per busy CPU core
# ("Any" CPU, Green Algorithms TDP table) and per GPU ("Any" GPU, same source). docs/labor-card.md.
TALLY_CPU_WATTS_PER_CORE = env.float("TALLY_CPU_WATTS_PER_CORE", default=12.0)
TALLY_GPU_WATTS = env.float("TALLY_GPU_WATTS", default=200.0)
