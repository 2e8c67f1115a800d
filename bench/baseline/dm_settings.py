"""The django-mailbox baseline's own Django project (runs only in var/bench-venv, never in the app's
virtualenv): django-mailbox 4.10.1 on the bench's PostgreSQL, with its defaults."""

import os

SECRET_KEY = "bench-baseline-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_mailbox"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["DM_DB_NAME"],
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": os.environ["DM_DB_PORT"],
        "CONN_MAX_AGE": 60,
    }
}
MEDIA_ROOT = os.environ.get("DM_MEDIA_ROOT", "/tmp/dm-media")
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "root": {"handlers": [], "level": "WARNING"}}
