"""Drop the foreign-key indexes that a composite index already starts with: Activity.shipment
(activity_timeline is (shipment, created_at)) and FiledMessage.customer (filed_by_customer is
(customer, -created_at)). Every index is written by each row the intake inserts (an activity and a
filing for most messages); lookups by shipment or customer use the composite index instead.

Only the indexes go (DROP INDEX: a brief exclusive lock, no table scan): Django's AlterField would
also drop and re-add, re-validating over the whole table, the foreign key constraints. Reversible.
"""

import django.db.models.deletion
from django.db import migrations, models

# Django's names for the ForeignKeys' indexes (the same on PostgreSQL and SQLite).
ACTIVITY_SHIPMENT_INDEX = "shipments_activity_shipment_id_0fbc710c"
FILED_CUSTOMER_INDEX = "shipments_filedmessage_customer_id_34abbe02"


def drop_index(name: str, table: str, column: str) -> migrations.RunSQL:
    return migrations.RunSQL(sql=f'DROP INDEX IF EXISTS "{name}"',
                             reverse_sql=f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ("{column}")')


class Migration(migrations.Migration):

    dependencies = [
        ('shipments', '0002_matching_number_indexes'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='activity',
                    name='shipment',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='activities', to='shipments.shipment'),
                ),
                migrations.AlterField(
                    model_name='filedmessage',
                    name='customer',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='filed_messages', to='shipments.customer'),
                ),
            ],
            database_operations=[
                drop_index(ACTIVITY_SHIPMENT_INDEX, "shipments_activity", "shipment_id"),
                drop_index(FILED_CUSTOMER_INDEX, "shipments_filedmessage", "customer_id"),
            ],
        ),
    ]
