"""One index for InboundMessage's Message-ID instead of two: the unique (mailbox, message_id) becomes
(message_id, mailbox), which also serves the lookups by Message-ID alone across a tenant's mailboxes,
so the index on message_id alone goes. Every index of this table is written by each of a message's
three writes (stored, processed, post-processed): one fewer saves ~3 us a write.

The same columns are unique, so nothing changes for the data. Locking: the new unique index is built
by ALTER TABLE ... ADD CONSTRAINT, which holds an ACCESS EXCLUSIVE lock on mailboxes_inboundmessage
while it runs (reads and writes of inbound mail wait: seconds per million messages). On a large table,
run it when polling is paused. Reversible: the reverse builds the old constraint and index again.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('mailboxes', '0005_inbound_fewer_indexes'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='inboundmessage',
            name='inbound_unique_message_id',
        ),
        migrations.AddConstraint(
            model_name='inboundmessage',
            constraint=models.UniqueConstraint(fields=('message_id', 'mailbox'), name='inbound_unique_message_id'),
        ),
        migrations.RemoveIndex(
            model_name='inboundmessage',
            name='mailboxes_i_message_b0054b_idx',
        ),
    ]
