"""Settings, all from the environment (see README, "Configuration").

With no environment at all this runs on one machine with no servers: SQLite, a filesystem
Celery broker, local media. Production switches by environment variables only.
"""
import re
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("PORTAL_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)


def _secret_key() -> str:
    """SECRET_KEY from the environment; else the file SECRET_KEY_FILE names (default var/secret_key, which
    `make run` generates and keeps); else, only under DEBUG, a fixed development key; else, for the offline
    management commands only (manage.py's OFFLINE_COMMANDS), a random key of that process."""
    if key := env.str("SECRET_KEY", default=""):
        return key
    key_file = Path(env.str("SECRET_KEY_FILE", default=str(VAR_DIR / "secret_key")))
    if key_file.is_file() and (key := key_file.read_text().strip()):
        return key
    if DEBUG:
        return "insecure-dev-key-only-for-debug"
    if env.str("PORTAL_OFFLINE_COMMAND", default=""):
        # manage.py sets this for commands that sign nothing (build_dataset, evaluate_detector, detect, ...):
        # a key of this process alone, never written down, so nothing it could sign would outlive the command
        import secrets

        return secrets.token_urlsafe(50)
    raise ImproperlyConfigured(
        "Set the SECRET_KEY environment variable (a long random string, the same on every web and worker "
        "process), or SECRET_KEY_FILE to a file that holds it. It is required when DEBUG is off. "
        "`make run` generates one into var/secret_key for a single-machine install."
    )


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",  # recovery codes
    "accounts",
    "audit",
    "scans",
    "inference",
    "reports",
    "reviews",
    "alerts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "audit.middleware.RequestIdMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): the second factor given this session
    "django.contrib.messages.middleware.MessageMiddleware",
    "accounts.middleware.TwoFactorMiddleware",  # asks for the code, or its set-up, before any other page
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
    "scans.middleware.UploadSizeLimitMiddleware",  # refuses an oversized upload before the body is read
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

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
                "portal.context_processors.navigation",
            ],
        },
    },
]

# --- Database: DATABASE_URL (postgres://user:pass@host:5432/name); SQLite by default.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
DATABASES["default"].setdefault("ATOMIC_REQUESTS", False)
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The local run has a web server and a worker writing to one file: WAL and IMMEDIATE transactions
    # make them wait for each other instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        **DATABASES["default"].get("OPTIONS", {}),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Accounts
AUTH_USER_MODEL = "accounts.User"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "scans:list"
LOGOUT_REDIRECT_URL = "accounts:login"

# Lockout after repeated failed log-ins (django-axes).
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=0.5)  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"

# Two-factor authentication: a code from an authenticator app (TOTP, RFC 6238) after the password. A user who set it
# up is asked for it at every log-in (and for the API token); MFA_REQUIRED=admins makes portal admins set it up
# before anything else, all makes everyone; off (the default) leaves it to each user. MFA_ISSUER names the portal in
# the app. Wrong codes wait 1, 2, 4, 8 ... seconds before the next try (django-otp's throttling).
MFA_REQUIRED = env.str("MFA_REQUIRED", default="off").strip().lower()
if MFA_REQUIRED not in ("off", "admins", "all"):
    raise ImproperlyConfigured(f"MFA_REQUIRED must be off, admins or all, not {MFA_REQUIRED!r}.")
OTP_TOTP_ISSUER = env.str("MFA_ISSUER", default="MRI tamper check")
OTP_TOTP_THROTTLE_FACTOR = 1
OTP_STATIC_THROTTLE_FACTOR = 1

# Sessions expire after SESSION_AGE_SECONDS of inactivity and when the browser closes.
SESSION_COOKIE_AGE = env.int("SESSION_AGE_SECONDS", default=8 * 3600)
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=not DEBUG and env.bool("HTTPS", default=False))
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env.bool("HTTPS", default=False)
SECURE_REDIRECT_EXEMPT = [r"^healthz/$"]  # load balancers probe over plain HTTP
SECURE_HSTS_SECONDS = env.int("HSTS_SECONDS", default=0)
SECURE_REFERRER_POLICY = "same-origin"
# Behind a reverse proxy (nginx, a load balancer) that sets X-Forwarded-Proto and X-Forwarded-For: trust them,
# so HTTPS is recognised and the lockout counts failed log-ins per client address, not per proxy.
BEHIND_PROXY = env.bool("BEHIND_PROXY", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_PROXY else None
PROXY_COUNT = env.int("PROXY_COUNT", default=1)
AXES_CLIENT_IP_CALLABLE = "portal.client_ip.client_ip"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

# --- Static and media
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))

# Object storage: set S3_BUCKET to store originals, slices and masks in S3-compatible storage.
S3_BUCKET = env.str("S3_BUCKET", default="")
if S3_BUCKET:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": env.str("S3_ENDPOINT_URL", default=None),
            "region_name": env.str("S3_REGION", default=None),
            "access_key": env.str("S3_ACCESS_KEY_ID", default=None),
            "secret_key": env.str("S3_SECRET_ACCESS_KEY", default=None),
            "default_acl": "private",
            "querystring_auth": True,  # private media, short-lived signed URLs
            "querystring_expire": env.int("S3_URL_EXPIRE_SECONDS", default=300),
            "file_overwrite": False,
            "signature_version": "s3v4",
            # "path" for MinIO and most S3-compatible stores without per-bucket DNS; "auto" for AWS.
            "addressing_style": env.str("S3_ADDRESSING_STYLE", default="auto"),
        },
    }
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG and env.bool("STATIC_MANIFEST", default=True)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Upload limits (bytes / pixels). Bad input is refused with a message naming the limit.
UPLOAD_MAX_BYTES = env.int("UPLOAD_MAX_BYTES", default=512 * 1024 * 1024)
UPLOAD_MAX_FILES = env.int("UPLOAD_MAX_FILES", default=1000)
UPLOAD_MAX_PIXELS = env.int("UPLOAD_MAX_PIXELS", default=4096 * 4096)  # per slice
UPLOAD_MAX_SLICES = env.int("UPLOAD_MAX_SLICES", default=2000)
ZIP_MAX_UNCOMPRESSED_BYTES = env.int("ZIP_MAX_UNCOMPRESSED_BYTES", default=2 * 1024 * 1024 * 1024)
ZIP_MAX_RATIO = env.int("ZIP_MAX_RATIO", default=200)
ZIP_MAX_MEMBERS = env.int("ZIP_MAX_MEMBERS", default=5000)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = UPLOAD_MAX_FILES

# --- Celery: CELERY_BROKER_URL (redis://..., amqp://...); a filesystem broker by default.
_broker_dir = VAR_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _sub in ("in", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "in"),
        "data_folder_out": str(_broker_dir / "in"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The queue tasks go to and workers read by default; INFERENCE_QUEUE (optional) sends detector jobs to their own
# queue, so GPU machines can run `celery -A portal worker -Q <INFERENCE_QUEUE>` and nothing else.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", default="celery")
INFERENCE_QUEUE = env.str("INFERENCE_QUEUE", default="") or None
# Periodic tasks, sent by exactly one `celery -A portal beat` (`make run` embeds it in its worker).
CELERY_BEAT_SCHEDULE = {
    "reap-stale-inference-jobs": {"task": "inference.reap_stale_jobs", "schedule": 60.0},
    "retry-pacs-sends": {"task": "reports.retry_pacs_sends", "schedule": 60.0},
    # does nothing unless PACS_RECHECK_HOURS is set
    "recheck-pacs-copies": {"task": "scans.recheck_pacs_copies", "schedule": 300.0},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Detector
# The weights bundle the worker and the commands load; the shipped one by default.
DETECTOR_WEIGHTS = env.str("DETECTOR_WEIGHTS", default=str(BASE_DIR / "models" / "detector.pt"))
DETECTOR_DEVICE = env.str("DETECTOR_DEVICE", default="auto")  # auto | cpu | cuda | cuda:N
DETECTOR_BATCH_SIZE = env.int("DETECTOR_BATCH_SIZE", default=4)
# CPU threads of the detector in each worker process; 0: the cores a worker may run on, shared by the jobs it is
# running now (at most CELERY_CONCURRENCY): a lone job takes them all, two on two cores one each (inference.services).
DETECTOR_THREADS = env.int("DETECTOR_THREADS", default=0)
if DETECTOR_THREADS < 0 or DETECTOR_BATCH_SIZE < 1:
    raise ImproperlyConfigured("DETECTOR_THREADS must be 0 (automatic) or more threads, and DETECTOR_BATCH_SIZE "
                               "at least 1.")
# A running detector job whose worker has not beaten its heartbeat for this long is taken as abandoned (the worker
# died): the reaper and the status read mark it failed (retryable), and a re-delivered task runs it again.
INFERENCE_STALE_AFTER_SECONDS = env.int("INFERENCE_STALE_AFTER_SECONDS", default=300)
# How common tampered scans are here (a share, 0.001 for 1 in 1000): the scan rule's tamper probability holds were
# tampered and authentic scans equally common; the scan page, the API and the PDF also say what it becomes at this
# share (inference.ml.scan_rule.at_prevalence). Empty: they give it at 1 in 10, 100 and 1000 instead.
TAMPER_PREVALENCE = env.str("TAMPER_PREVALENCE", default="").strip() or None
if TAMPER_PREVALENCE is not None:
    from inference.ml.scan_rule import check_prevalence

    try:
        TAMPER_PREVALENCE = check_prevalence(TAMPER_PREVALENCE)
    except ValueError as exc:
        raise ImproperlyConfigured(f"TAMPER_PREVALENCE: {exc}") from None

# --- PACS: where "Send to PACS" stores an analysis (the SEG, the report and the structured report as DICOM) by C-STORE.
# PACS_DESTINATION=AE_TITLE@host:port (empty: no PACS, the button is not shown); this portal calls as
# PACS_CALLING_AE, which the PACS must know; each network step waits PACS_TIMEOUT_SECONDS at most.
PACS_DESTINATION = env.str("PACS_DESTINATION", default="")
PACS_CALLING_AE = env.str("PACS_CALLING_AE", default="TAMPERCHECK")
PACS_TIMEOUT_SECONDS = env.float("PACS_TIMEOUT_SECONDS", default=30)
PACS_QUEUE = env.str("PACS_QUEUE", default="") or None  # the Celery queue of the sends; default: the default queue
# PACS_COMPARE_UPLOADS=1: every uploaded DICOM scan is compared with the PACS's copy of its series by a worker, after
# the upload (C-FIND + C-GET of the series: the PACS's load grows with the uploads); off: only on request.
PACS_COMPARE_UPLOADS = env.bool("PACS_COMPARE_UPLOADS", default=False)
# PACS_RECHECK_HOURS=24: every DICOM scan whose series the PACS has held (compared before, imported from it, pushed
# by it) is compared with the PACS's copy again once its latest comparison is this old, so that an image altered in
# the archive after it reached the portal is found; at most PACS_RECHECK_BATCH are queued every 5 minutes (beat).
# 0 (the default): never on a schedule.
PACS_RECHECK_HOURS = env.float("PACS_RECHECK_HOURS", default=0)
PACS_RECHECK_BATCH = env.int("PACS_RECHECK_BATCH", default=20)
if PACS_RECHECK_HOURS < 0 or PACS_RECHECK_BATCH < 1:
    raise ImproperlyConfigured("PACS_RECHECK_HOURS must be 0 (off) or more hours, and PACS_RECHECK_BATCH at least 1.")

# --- Alerts (alerts app): an e-mail to ALERT_EMAILS, from a worker, on each event that is evidence of tampering.
# ALERT_ON: which kinds (alerts.rules): pacs_changed (the PACS's copy changed since its last comparison),
# pacs_differs (a comparison found images altered or missing in the PACS's copy), altered_copy (another stored copy
# of a scan's images has other pixels): the default, pixel evidence that does not depend on the detector; and,
# on request only, tampered_verdict (the detector read a scan as fake_added / fake_removed: it has false alarms, and a
# series is read as tampered when any of its slices is).
# The mail server: EMAIL_URL (smtp://host:25, smtp+tls://user:password@host:587, consolemail:// to try it out).
ALERT_EMAILS = [a.strip() for a in env.list("ALERT_EMAILS", default=[]) if a.strip()]
ALERT_KINDS = ("pacs_changed", "pacs_differs", "altered_copy", "tampered_verdict")
ALERT_ON = [k.strip() for k in env.list("ALERT_ON", default=list(ALERT_KINDS[:3])) if k.strip()]
ALERT_FROM = env.str("ALERT_FROM", default="tampercheck@localhost")
ALERT_SUBJECT_PREFIX = env.str("ALERT_SUBJECT_PREFIX", default="[MRI tamper check] ")
ALERT_QUEUE = env.str("ALERT_QUEUE", default="") or None  # the Celery queue of the e-mails; default: the default queue
# ALERT_WEBHOOK_URL: also POST each alert as JSON there (a chat channel's incoming webhook, an incident system, a
# SIEM); its `text` field holds the whole message.
ALERT_WEBHOOK_URL = env.str("ALERT_WEBHOOK_URL", default="")
ALERT_WEBHOOK_TIMEOUT = env.float("ALERT_WEBHOOK_TIMEOUT", default=10)
if ALERT_WEBHOOK_URL and not re.match(r"^https?://[^/\s]+", ALERT_WEBHOOK_URL):
    raise ImproperlyConfigured("ALERT_WEBHOOK_URL must be an http(s):// address.")
# The portal's address as users reach it (https://tampercheck.hospital.org), for links in e-mails; unset: paths only.
PORTAL_URL = env.str("PORTAL_URL", default="")
if unknown := [k for k in ALERT_ON if k not in ALERT_KINDS]:
    raise ImproperlyConfigured(f"ALERT_ON: unknown kind {', '.join(unknown)}; the kinds are {', '.join(ALERT_KINDS)}.")
try:
    from django.core.validators import validate_email as _validate_email

    for _address in (*ALERT_EMAILS, ALERT_FROM):
        _validate_email(_address)
except Exception as exc:
    raise ImproperlyConfigured(f"ALERT_EMAILS and ALERT_FROM must be e-mail addresses: {_address!r} is not.") from exc
if PORTAL_URL and not re.match(r"^https?://[^/\s]+", PORTAL_URL):
    raise ImproperlyConfigured(f"PORTAL_URL must be the portal's address, http(s)://host[:port][/path], "
                               f"not {PORTAL_URL!r}.")
_email = env.email_url_config(env.str("EMAIL_URL", default="smtp://localhost:25"))
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST, EMAIL_PORT = _email.get("EMAIL_HOST") or "localhost", _email.get("EMAIL_PORT") or 25
EMAIL_HOST_USER, EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_USER") or "", _email.get("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS, EMAIL_USE_SSL = bool(_email.get("EMAIL_USE_TLS")), bool(_email.get("EMAIL_USE_SSL"))
EMAIL_TIMEOUT = env.float("EMAIL_TIMEOUT", default=30)
# A send that failed for a reason that may pass (the PACS could not be reached, stopped answering, was out of
# resources) is tried again after each of these delays in minutes, then given up; "" never tries again. A send with
# no outcome PACS_SENDING_STALE_MINUTES after it began (its worker died) counts as such a failure.
try:
    PACS_RETRY_MINUTES = [float(m) for m in env.list("PACS_RETRY_MINUTES", default=["1", "5", "15", "60"]) if m.strip()]
    if any(not 0 < m <= 24 * 60 for m in PACS_RETRY_MINUTES):
        raise ValueError
except ValueError as exc:
    raise ImproperlyConfigured("PACS_RETRY_MINUTES must be comma-separated minutes between 0 and 1440 (e.g. 1,5,15,60), "
                               "or empty for no retries.") from exc
PACS_SENDING_STALE_MINUTES = env.float("PACS_SENDING_STALE_MINUTES", default=10)
try:
    from reports.pacs import AE_TITLE as _AE_TITLE, parse_destination as _parse_destination

    _parse_destination(PACS_DESTINATION)
    if not _AE_TITLE.fullmatch(PACS_CALLING_AE):
        raise ValueError(f"PACS_CALLING_AE {PACS_CALLING_AE!r} is not a DICOM AE title (1-16 characters, no backslash).")
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from exc

# --- DICOM TLS: PACS_TLS=1 makes every association with the PACS (send, search, import, check_pacs) run over TLS, and
# DICOM_RECEIVER_TLS=1 makes the receiver take TLS only, requiring a certificate from each peer. Both use this
# portal's certificate and private key (PEM) and the bundle of certificates it trusts (the PACS's and the peers', or
# the authority that signed them).
PACS_TLS = env.bool("PACS_TLS", default=False)
DICOM_RECEIVER_TLS = env.bool("DICOM_RECEIVER_TLS", default=False)
DICOM_TLS_CERTIFICATE = env.str("DICOM_TLS_CERTIFICATE", default="")
DICOM_TLS_PRIVATE_KEY = env.str("DICOM_TLS_PRIVATE_KEY", default="")
DICOM_TLS_TRUSTED = env.str("DICOM_TLS_TRUSTED", default="")
if (PACS_TLS or DICOM_RECEIVER_TLS) and not (DICOM_TLS_CERTIFICATE and DICOM_TLS_PRIVATE_KEY and DICOM_TLS_TRUSTED):
    _missing = [n for n in ("DICOM_TLS_CERTIFICATE", "DICOM_TLS_PRIVATE_KEY", "DICOM_TLS_TRUSTED") if not globals()[n]]
    raise ImproperlyConfigured(f"{'PACS_TLS' if PACS_TLS else 'DICOM_RECEIVER_TLS'} is on but {', '.join(_missing)} "
                               f"{'is' if len(_missing) == 1 else 'are'} not set: DICOM TLS needs this portal's "
                               "certificate, its private key and the certificates it trusts (PEM files).")

# --- DICOM receiver (`manage.py dicom_receiver`, `make receiver`): the portal as a DICOM node that the PACS, a router
# or a scanner pushes series to (C-STORE); each series becomes a scan of the account its sender is mapped to, and is
# analysed. DICOM_RECEIVER_PEERS="ORTHANC=doctor_a, MR1@10.0.0.5=radiology" names who may send (AE title, optionally
# the IP address it must call from) and for whom; empty: the receiver does not run. It answers as DICOM_RECEIVER_AE
# on DICOM_RECEIVER_HOST:DICOM_RECEIVER_PORT; a series is complete DICOM_RECEIVER_IDLE_SECONDS after its last instance.
DICOM_RECEIVER_PEERS = env.str("DICOM_RECEIVER_PEERS", default="")
DICOM_RECEIVER_AE = env.str("DICOM_RECEIVER_AE", default=PACS_CALLING_AE)
DICOM_RECEIVER_HOST = env.str("DICOM_RECEIVER_HOST", default="127.0.0.1")
DICOM_RECEIVER_PORT = env.int("DICOM_RECEIVER_PORT", default=11112)
DICOM_RECEIVER_IDLE_SECONDS = env.float("DICOM_RECEIVER_IDLE_SECONDS", default=5)
DICOM_RECEIVER_SPOOL = Path(env.str("DICOM_RECEIVER_SPOOL", default=str(VAR_DIR / "dicom-spool")))
try:
    from scans.dicom_receiver import AE_TITLE as _RECEIVER_AE_TITLE, parse_peers as _parse_peers

    _parse_peers(DICOM_RECEIVER_PEERS)
    if not _RECEIVER_AE_TITLE.fullmatch(DICOM_RECEIVER_AE):
        raise ValueError(f"DICOM_RECEIVER_AE {DICOM_RECEIVER_AE!r} is not a DICOM AE title (1-16 characters, "
                         "no backslash).")
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from exc

# --- API
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 25,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MRI tamper detection portal API",
    "DESCRIPTION": "Upload brain MRI, run the tamper detector, read verdicts and masks.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # one name for the four verdicts, whichever field carries them (job, slice, review, detector_verdict)
    "ENUM_NAME_OVERRIDES": {"VerdictEnum": "inference.models.VERDICT_CHOICES"},
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # Chatty libraries at INFO (every DICOM association step, every module highdicom copies): warnings and up;
    # the portal logs and audits the outcome itself.
    "loggers": {name: {"level": env.str("LIBRARY_LOG_LEVEL", default="WARNING")} for name in ("pynetdicom", "highdicom")},
}
