# The TMS image: one image for every service (web, worker, beat, idle); docker-compose.yml picks the command.
#   docker build -t tms .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=tms.settings \
    VAR_DIR=/app/var \
    MEDIA_ROOT=/data/media \
    DEBUG=0 \
    LOG_FORMAT=json \
    XDG_CACHE_HOME=/app/.cache

WORKDIR /app

# A user without privileges owns nothing of the code: the processes can write only var/ and the media volume.
RUN groupadd --system --gid 10001 tms \
 && useradd --system --uid 10001 --gid tms --home-dir /app --shell /usr/sbin/nologin tms

# Dependencies first (from pyproject.toml), so that a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN pip install .

COPY . .
# The app's bytecode built once here: with PYTHONDONTWRITEBYTECODE (and /app not writable by tms),
# every process would otherwise compile all of it from source at start (scripts/bootstrap.sh).
RUN python -m compileall -q tms mailboxes shipments documents classifier demo

# Static files (admin, API) are collected into the image and served by WhiteNoise. Settings refuse to
# load with DEBUG off and no secrets, so this one step gets throwaway values; they are not in the image's
# environment and encrypt nothing (the Fernet key below is 32 zero bytes).
RUN SECRET_KEY=collectstatic-only \
    FIELD_ENCRYPTION_KEYS=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
    ALLOWED_HOSTS=build.invalid \
    python manage.py collectstatic --noinput \
 && mkdir -p /app/var /data/media \
 && install -d -m 700 -o tms -g tms /app/.cache \
 && chown -R tms:tms /app/var /data/media

USER tms
# The classifier's place tables built into their cache file once, in the image, as the user that reads
# them (scripts/bootstrap.sh): every process would otherwise build them (~2 s, ~200 MB more) because
# nothing of /app but var/ is writable to it.
RUN python -c "import classifier; classifier.warm_up()"
VOLUME ["/data/media"]
EXPOSE 8000

# The web service; the worker, beat and idle services give their own command. Its settings (port 8000,
# sync workers, WEB_CONCURRENCY processes, default 2 per CPU) are in tms/gunicorn_conf.py.
CMD ["gunicorn", "tms.wsgi:application", "--config", "tms/gunicorn_conf.py"]
