import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tms.settings")

application = get_wsgi_application()

# The Celery app now, at start-up, rather than in the first request that queues a task (tms/__init__.py).
import tms.celery  # noqa: E402, F401
