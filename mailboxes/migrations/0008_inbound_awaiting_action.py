"""A partial index of the processed messages still waiting for the post-processing action.

Each pass that finds new mail ends with its repair, which first asks whether the mailbox has
anything unfinished: intake pending, or processed and not yet archived / marked read / deleted. By
the status index, the second half read every processed message of the mailbox and its row (54 ms a
pass at 50,000 messages in the bench, growing with the mailbox); by this index, only those waiting
(normally none). Partial, so it is small and offers no way in to the other queries of the mailbox.

Locking: CREATE INDEX holds a SHARE lock on mailboxes_inboundmessage while it builds (reads go on,
writes of inbound mail wait: seconds per million messages). On a large table, run it when polling is
paused. Reversible: the reverse drops the index.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0002_classification_rules'),
        ('mailboxes', '0007_inbound_status_first'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='inboundmessage',
            index=models.Index(condition=models.Q(('post_processed_at__isnull', True), ('status__in', ['processed', 'ignored'])), fields=['mailbox'], name='inbound_awaiting_action'),
        ),
    ]
