"""InboundMessage's (mailbox, status) index becomes (status, mailbox).

For a mailbox its statistics had not seen yet (a new mailbox in an analysed table, until the next
ANALYZE: on a big table, its whole first import) PostgreSQL took the (mailbox, status) index for
every query that names the mailbox, the UID lookup of each fetch batch too, and read every stored
message of the mailbox each batch (13.5 ms a batch at 30,000 messages, growing with the import). With
status first, the queries by status still find their rows by it and the mailbox, and the others go
by inbound_unique_uid.

Locking: CREATE INDEX holds a SHARE lock on mailboxes_inboundmessage while it builds (reads go on,
writes of inbound mail wait: seconds per million messages). On a large table, run it when polling is
paused. Reversible: the reverse builds the old index again.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0002_classification_rules'),
        ('mailboxes', '0006_inbound_message_id_one_index'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='inboundmessage',
            name='mailboxes_i_mailbox_5c4b87_idx',
        ),
        migrations.AddIndex(
            model_name='inboundmessage',
            index=models.Index(fields=['status', 'mailbox'], name='inbound_status_mailbox'),
        ),
    ]
