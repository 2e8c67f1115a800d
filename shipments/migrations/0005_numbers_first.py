"""The matcher's keys first: shipment_bol_upper, shipment_po_upper and shipment_pro_upper become
(upper(number), tenant) instead of (tenant, upper(number)), and shipment_number_unique becomes
(number, tenant) instead of (tenant, number). documents.matching looks a batch's BOL/PO/PRO numbers
and shipment numbers up one key at a time, checking the tenant on each row without going through
it (tms.db.by_each_key): for a tenant the planner's statistics had not seen yet (a new tenant's
first import, until the next ANALYZE), the indexes that started with the tenant made PostgreSQL
read all the tenant's shipments through the tenant's own index for every lookup. The same numbers
are unique either way.

One transaction on PostgreSQL: the constraint is dropped and rebuilt with no moment without it.
The drops take an ACCESS EXCLUSIVE lock on shipments_shipment that is held until the four indexes
are built (reads and writes of shipments wait: seconds per million rows): run it with polling
paused on a large table. Reversible: the reverse builds the old indexes and constraint again.
"""

import django.db.models.functions.text
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('shipments', '0004_message_id_first'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='shipment',
            name='shipment_number_unique',
        ),
        migrations.AddConstraint(
            model_name='shipment',
            constraint=models.UniqueConstraint(fields=('number', 'tenant'), name='shipment_number_unique'),
        ),
        migrations.RemoveIndex(
            model_name='shipment',
            name='shipment_bol_upper',
        ),
        migrations.RemoveIndex(
            model_name='shipment',
            name='shipment_po_upper',
        ),
        migrations.RemoveIndex(
            model_name='shipment',
            name='shipment_pro_upper',
        ),
        migrations.AddIndex(
            model_name='shipment',
            index=models.Index(django.db.models.functions.text.Upper('bol_number'), models.F('tenant'), name='shipment_bol_upper'),
        ),
        migrations.AddIndex(
            model_name='shipment',
            index=models.Index(django.db.models.functions.text.Upper('po_number'), models.F('tenant'), name='shipment_po_upper'),
        ),
        migrations.AddIndex(
            model_name='shipment',
            index=models.Index(django.db.models.functions.text.Upper('pro_number'), models.F('tenant'), name='shipment_pro_upper'),
        ),
    ]
