"""shipment_once_per_message_id becomes (source_message_key, tenant) instead of (tenant,
source_message_key): the intake looks a batch's shipments up by Message-ID one key at a time,
checking the tenant on each row without going through it (tms.db.by_each_key: with (tenant, key),
a tenant the planner's statistics had not seen yet made PostgreSQL read all its shipments through
the tenant's indexes, a key at a time). Same rows unique either way.

One transaction on PostgreSQL: the constraint is dropped and rebuilt with no moment without it;
the rebuild reads the table under a lock that blocks writes to shipments (seconds at a million
rows): run it with polling paused on a large table.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0002_classification_rules'),
        ('mailboxes', '0006_inbound_message_id_one_index'),
        ('shipments', '0003_redundant_fk_indexes'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='shipment',
            name='shipment_once_per_message_id',
        ),
        migrations.AddConstraint(
            model_name='shipment',
            constraint=models.UniqueConstraint(condition=models.Q(('source_message_key', ''), _negated=True), fields=('source_message_key', 'tenant'), name='shipment_once_per_message_id'),
        ),
    ]
