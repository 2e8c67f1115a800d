"""Database helpers the apps share, below the ORM where the ORM costs more than the work."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.db import models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper


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
    with binding_cursor(connection) as cursor:
        cursor.executemany(f"UPDATE {table} SET {assignments} WHERE {key} = %s", rows)  # noqa: S608


@contextmanager
def binding_cursor(connection: BaseDatabaseWrapper | None = None) -> Iterator[Any]:
    """A cursor in the current transaction that, on PostgreSQL, sends its parameters apart from the
    statement (server-side binding, whatever DATABASE_SERVER_SIDE_BINDING says for the ORM). Bytes
    then travel as binary instead of a hex literal twice their size that the client writes and the
    server parses; nothing is prepared (Django's prepare_threshold: safe behind a pooler). Wrapped
    as Django wraps its own cursors: database errors become django.db's, queries are logged when
    Django logs them (tests' CaptureQueriesContext). Elsewhere (the demo's SQLite): Django's cursor."""
    connection = connection or transaction.get_connection()
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    import psycopg

    connection.ensure_connection()
    raw = psycopg.Cursor(connection.connection)
    # make_cursor wraps any DB-API cursor (typed for Django's own).
    wrapped = (connection.make_debug_cursor(raw) if connection.queries_logged  # type: ignore[arg-type]
               else connection.make_cursor(raw))  # type: ignore[arg-type]
    with wrapped:
        yield wrapped


def executemany_returning(sql: str, rows: Sequence[Sequence[Any]],
                          connection: BaseDatabaseWrapper | None = None) -> list[tuple[Any, ...]]:
    """Run one statement with RETURNING for each row of parameters; every row it returned. On
    PostgreSQL one pipelined executemany (one round trip, the statement parsed once, parameters
    bound on the server); elsewhere one execute a row."""
    connection = connection or transaction.get_connection()
    out: list[tuple[Any, ...]] = []
    if not rows:
        return out
    with binding_cursor(connection) as cursor:
        if connection.vendor != "postgresql":
            for params in rows:
                cursor.execute(sql, params)
                out += cursor.fetchall()
            return out
        with connection.wrap_database_errors:
            raw = cursor.cursor
            raw.executemany(sql, rows, returning=True)
            while True:
                out += raw.fetchall()
                if not raw.nextset():
                    break
    return out


def rows_update_unnest(*, objects: Sequence[models.Model], field_names: Sequence[str]) -> None:
    """rows_update in ONE statement: `UPDATE t SET c = v.c, ... FROM unnest(%s::type[], ...) AS
    v(...) WHERE t.pk = v.pk`, one array a column. The server parses and plans it once instead of
    once a row (a batch of 50 rows: ~0.1 ms of PostgreSQL a row less, bench/README.md "Ingest").
    Same values, same columns, same locking contract as rows_update; when a pk is given twice the
    last object's values are written, as rows_update's last UPDATE would leave them. Elsewhere
    than on PostgreSQL: rows_update."""
    if not objects:
        return
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        rows_update(objects=objects, field_names=field_names)
        return
    meta = type(objects[0])._meta
    fields = [meta.get_field(name) for name in field_names]
    pk = meta.pk
    assert pk is not None
    quote = connection.ops.quote_name
    latest = {o.pk: o for o in objects}  # the last object of a pk wins
    columns = [[o.pk for o in latest.values()]]
    columns += [[f.get_db_prep_save(getattr(o, f.attname), connection) for o in latest.values()]  # type: ignore[union-attr]
                for f in fields]
    # Table, column names and types come from the model, never from input.
    names = [quote(pk.column), *(quote(f.column) for f in fields)]  # type: ignore[union-attr]
    arrays = ", ".join(f"%b::{_array_type(f, connection)}" for f in [pk, *fields])
    assignments = ", ".join(f"{name} = v.{name}" for name in names[1:])
    table = quote(meta.db_table)
    sql = (f"UPDATE {table} SET {assignments} FROM unnest({arrays}) AS v({', '.join(names)})"  # noqa: S608
           f" WHERE {table}.{names[0]} = v.{names[0]}")
    with binding_cursor(connection) as cursor:
        cursor.execute(sql, columns)


def _array_type(field: Any, connection: BaseDatabaseWrapper) -> str:
    """The PostgreSQL array type of a column (`varchar[]`, `jsonb[]`), without the type's modifiers:
    a cast to varchar(16)[] would cut a longer value short where the column refuses it."""
    return f"{str(field.db_type(connection)).split('(')[0]}[]"
