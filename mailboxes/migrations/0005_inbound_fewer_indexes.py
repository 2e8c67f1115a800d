"""Drop the indexes of InboundMessage that no query needs (mailbox alone, status alone): each is
written by every one of a message's writes. See the comment on InboundMessage.mailbox."""

import django.db.models.deletion
from django.db import migrations, models

# Django's name for the ForeignKey's index (the same on PostgreSQL and SQLite).
MAILBOX_INDEX = "mailboxes_inboundmessage_mailbox_id_1350695a"


class Migration(migrations.Migration):

    dependencies = [
        ('mailboxes', '0004_merge_0002_connections_0003_reading'),
    ]

    operations = [
        # Only the index goes: Django's AlterField would also drop and re-add (re-validate, over the
        # whole table) the foreign key constraint.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='inboundmessage',
                    name='mailbox',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='inbound_messages', to='mailboxes.mailbox'),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    sql=f'DROP INDEX IF EXISTS "{MAILBOX_INDEX}"',
                    reverse_sql=f'CREATE INDEX IF NOT EXISTS "{MAILBOX_INDEX}" ON "mailboxes_inboundmessage" ("mailbox_id")',
                ),
            ],
        ),
        migrations.AlterField(
            model_name='inboundmessage',
            name='status',
            field=models.CharField(choices=[('received', 'Received'), ('processed', 'Processed'), ('ignored', 'Ignored'), ('failed', 'Failed'), ('quarantined', 'Quarantined'), ('too_large', 'Too large')], default='received', max_length=16),
        ),
    ]
