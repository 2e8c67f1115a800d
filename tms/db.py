"""Database helpers the apps share, below the ORM where the ORM costs more than the work."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import models, transaction


def rows_update(*, objects: Sequence[models.Model], field_names: Sequence[str]) -> None:
    """Write these columns of already-loaded rows of one model: one `UPDATE ... WHERE pk = %s` per
    row, sent with executemany (psycopg pipelines them: one round trip). bulk_update's CASE WHEN per
    column costs more to build and to run (bench/README.md, "Ingest"). Columns are written back as
    the objects hold them, so the caller must hold the rows' locks."""
    if not objects:
        return
    meta = type(objects[0])._meta
    fields = [meta.get_field(name) for name in field_names]
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    # Table and column names come from the model, never from input.
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)  # type: ignore[union-attr]
    table, key = quote(meta.db_table), quote(meta.pk.column)  # type: ignore[union-attr]
    rows = [[f.get_db_prep_save(getattr(o, f.attname), connection) for f in fields] + [o.pk]  # type: ignore[union-attr]
            for o in objects]
    with connection.cursor() as cursor:
        cursor.executemany(f"UPDATE {table} SET {assignments} WHERE {key} = %s", rows)  # noqa: S608
