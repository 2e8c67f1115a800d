"""Create (or replace) the django-mailbox Mailbox row for one bench user; prints nothing.

    DM_URI=imap+ssl://user%40host:pw@127.0.0.1:993 python -m django shell < dm_mailbox.py
"""

import os

from django_mailbox.models import Mailbox, Message

Message.objects.all().delete()
Mailbox.objects.all().delete()
Mailbox.objects.create(name="bench", uri=os.environ["DM_URI"], active=True)
