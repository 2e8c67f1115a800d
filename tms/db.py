"""Database helpers the apps share, below the ORM where the ORM costs more than the work."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, TypeVar, cast

from django.db import OperationalError, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field

M = TypeVar("M", bound=models.Model)


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
    fields = [cast("Field[Any, Any]", meta.get_field(name)) for name in field_names]
    pk = meta.pk
    assert pk is not None
    quote = connection.ops.quote_name
    rows = list({o.pk: o for o in objects}.values())  # the last object of a pk wins
    columns = [[o.pk for o in rows], *(_prepared(f, [getattr(o, f.attname) for o in rows], connection) for f in fields)]
    # Table, column names and types come from the model, never from input.
    names = [quote(pk.column), *(quote(str(f.column)) for f in fields)]
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


def rows_insert(objects: Sequence[M], *, ignore_conflicts: bool = False, key: str | None = None) -> list[M]:
    """Model.unscoped.bulk_create(objects, ignore_conflicts=...) without its compiler: the same
    columns and values (each field's pre_save as for an INSERT - auto_now_add, auto_now - then
    get_db_prep_save), sent as ONE `INSERT ... SELECT * FROM unnest(%b::type[], ...)` whatever the
    number of rows: one array a column, bound as binary, so the statement's text is the same for
    every batch (psycopg converts it once) and its parameters are few. `ON CONFLICT DO NOTHING`
    with ignore_conflicts. Returns the objects inserted, their primary keys set from RETURNING and
    their state saved, as bulk_create leaves them (RETURNING in the order of the rows, as
    bulk_create assumes of its own UNNEST insert). With ignore_conflicts the rows a conflict
    skipped are left out: `key` names a field unique among the objects (public_id, say) by which
    the returned rows are told apart. Objects of one model, none with a primary key set;
    elsewhere than PostgreSQL (the demo's SQLite), or given a primary key: bulk_create itself,
    and with ignore_conflicts nothing is known inserted then ([])."""
    if not objects:
        return []
    model = type(objects[0])
    meta = model._meta
    connection = transaction.get_connection()
    if (connection.vendor != "postgresql" or any(o.pk is not None for o in objects)
            or (ignore_conflicts and key is None)):
        done = model._base_manager.bulk_create(objects, ignore_conflicts=ignore_conflicts)
        return [] if ignore_conflicts else list(done)
    fields = _insert_fields(model)
    for obj in objects:
        # As bulk_create: a related object saved since it was assigned gives its id now.
        obj._prepare_related_fields_for_save(operation_name="bulk_create")  # type: ignore[attr-defined]
    columns = [_column_values(f, objects, connection) for f in fields]
    returning = [str(meta.pk.name), *([key] if ignore_conflicts and key else [])]  # type: ignore[union-attr]
    returned = columns_insert(model, field_names=[f.name for f in fields], columns=columns,
                              ignore_conflicts=ignore_conflicts, returning=returning)
    pk = meta.pk.attname  # type: ignore[union-attr]
    if ignore_conflicts:
        assert key is not None  # (checked above)
        by_key = {row[1]: row[0] for row in returned}
        attname = cast("Field[Any, Any]", meta.get_field(key)).attname
        inserted = [obj for obj in objects if getattr(obj, attname) in by_key]
        for obj in inserted:
            setattr(obj, pk, by_key[getattr(obj, attname)])
    else:
        inserted = list(objects)
        for obj, row in zip(inserted, returned, strict=True):
            setattr(obj, pk, row[0])
    for obj in inserted:
        obj._state.adding = False
        obj._state.db = connection.alias
    return inserted


@lru_cache(maxsize=64)
def _insert_fields(model: type[models.Model]) -> tuple[Field[Any, Any], ...]:
    """The columns bulk_create writes for rows without a primary key (not generated, not the pk)."""
    return tuple(cast("Field[Any, Any]", f) for f in model._meta.concrete_fields
                 if not f.primary_key and not getattr(f, "generated", False))


def _column_values(field: Field[Any, Any], objects: Sequence[models.Model], connection: BaseDatabaseWrapper
                   ) -> list[Any]:
    """`[field.get_db_prep_save(field.pre_save(obj, True), connection) for obj in objects]`, a column at
    a time: a field whose pre_save only reads the attribute is read with getattr, and where
    preparation hands a value of that exact type back unchanged (a str to a CharField, an int to a
    foreign key) or only wraps it (an int to PostgreSQL's integer types), that is done without the
    field's four nested calls a value (a batch's shipments: ~1,500 values). Any other value goes
    through the field itself. tests/test_db.py holds this to Django's own preparation for every
    field type the intake inserts."""
    if _column_rule(field, connection.alias)[0]:
        attname = field.attname
        values = [getattr(obj, attname) for obj in objects]
    else:
        values = [field.pre_save(obj, True) for obj in objects]  # type: ignore[arg-type]
    return _prepared(field, values, connection)


def _prepared(field: Field[Any, Any], values: list[Any], connection: BaseDatabaseWrapper) -> list[Any]:
    """`[field.get_db_prep_save(value, connection) for value in values]`, the short way where
    _column_rule knows the answer (see _column_values)."""
    _, same, wrap = _column_rule(field, connection.alias)
    prepare = field.get_db_prep_save
    if wrap is not None:
        return [wrap(value) if type(value) is int else None if value is None else prepare(value, connection)
                for value in values]
    if same:
        return [value if type(value) in same else prepare(value, connection) for value in values]
    return [prepare(value, connection) for value in values]


_NONE = type(None)
# Field classes (exactly these, not subclasses) whose preparation for PostgreSQL returns a value of
# these exact types as it is: to_python gives it back (a str for CharField, a date - not a datetime -
# for DateField) and the backend's adapt_*_value does nothing to it.
_UNCHANGED: dict[type[Field[Any, Any]], frozenset[type]] = {
    models.CharField: frozenset({str, _NONE}),
    models.EmailField: frozenset({str, _NONE}),
    models.TextField: frozenset({str, _NONE}),
    models.BooleanField: frozenset({bool, _NONE}),
    models.DateField: frozenset({dt.date, _NONE}),
    models.UUIDField: frozenset({uuid.UUID, _NONE}),
    # Only as the target of a foreign key: validate_autopk_value leaves an int as it is.
    models.AutoField: frozenset({int, _NONE}),
    models.BigAutoField: frozenset({int, _NONE}),
}
# Integer fields: int(value) then the backend's adapt_integerfield_value (psycopg 3: Int2/Int4/Int8...).
_INTEGERS = (models.IntegerField, models.BigIntegerField, models.SmallIntegerField, models.PositiveIntegerField,
             models.PositiveBigIntegerField, models.PositiveSmallIntegerField)


@lru_cache(maxsize=256)
def _column_rule(field: Field[Any, Any], alias: str) -> tuple[bool, frozenset[type], Any]:
    """How _column_values reads and prepares a field's values for the database `alias`: (pre_save
    only reads the attribute, the value types preparation returns unchanged, the wrapper it puts
    around an int or None)."""
    connection = connections[alias]
    kind = type(field)
    reads = kind.pre_save is Field.pre_save or (
        kind.pre_save is models.DateField.pre_save and not getattr(field, "auto_now", False)
        and not getattr(field, "auto_now_add", False))
    if connection.vendor != "postgresql":
        return reads, frozenset(), None
    if isinstance(field, models.ForeignKey) and type(field).get_db_prep_save is models.ForeignKey.get_db_prep_save:
        # ForeignKey.get_db_prep_save is its target's get_db_prep_save for a value other than None or "".
        target = field.target_field
        return reads, _UNCHANGED.get(type(target), frozenset()), None
    if kind in _INTEGERS:
        wrapper = getattr(connection.ops, "integerfield_type_map", {}).get(field.get_internal_type())
        return reads, frozenset(), wrapper
    return reads, _UNCHANGED.get(kind, frozenset()), None


def columns_insert(model: type[models.Model], *, field_names: Sequence[str], columns: Sequence[Sequence[Any]],
                   ignore_conflicts: bool = False, returning: Sequence[str] = ()) -> list[tuple[Any, ...]]:
    """PostgreSQL only: `INSERT INTO t (c, ...) SELECT * FROM unnest(%b::type[], ...) [ON CONFLICT DO
    NOTHING] [RETURNING ...]`, one array a column (`columns[i]` holds the values of
    `field_names[i]`, as get_db_prep_save gives them) - one statement whatever the number of rows,
    its text the same for every batch. The rows RETURNING gave, in the order of the arrays."""
    connection = transaction.get_connection()
    sql = _insert_sql(model, connection, tuple(field_names), ignore_conflicts, tuple(returning))
    with binding_cursor(connection) as cursor:
        cursor.execute(sql, columns)
        return cursor.fetchall() if returning else []


_INSERTS: dict[tuple[Any, ...], str] = {}


def _insert_sql(model: type[models.Model], connection: BaseDatabaseWrapper, field_names: tuple[str, ...],
                ignore_conflicts: bool, returning: tuple[str, ...]) -> str:
    cache_key = (model, connection.alias, field_names, ignore_conflicts, returning)
    found = _INSERTS.get(cache_key)
    if found is None:
        meta = model._meta
        quote = connection.ops.quote_name
        fields = [cast("Field[Any, Any]", meta.get_field(name)) for name in field_names]
        returned = [cast("Field[Any, Any]", meta.get_field(name)) for name in returning]
        # Binary (%b): psycopg's text format escapes every element of an array in Python, a regex
        # each, which cost more than all the rest of the INSERT (a batch's shipments: ~40%).
        arrays = ", ".join(f"%b::{_array_type(f, connection)}" for f in fields)
        # Table and column names come from the model, never from input.
        found = _INSERTS[cache_key] = (
            f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(str(f.column)) for f in fields)})"  # noqa: S608
            f" SELECT * FROM unnest({arrays}){' ON CONFLICT DO NOTHING' if ignore_conflicts else ''}"
            + (f" RETURNING {', '.join(quote(str(f.column)) for f in returned)}" if returned else "")
        )
    return found


def model_rows(model: type[M], where: str, params: Sequence[Any], *, order_by: str = "", lock: bool = False,
               defer: Sequence[str] = (), annotations: Sequence[tuple[str, str]] = (), source: str = "") -> list[M]:
    """`SELECT <the model's columns> FROM <its table> WHERE <where> [ORDER BY ...] [FOR UPDATE]` as
    model instances, as the ORM's query would give them: each column through its field's
    converters (a JSONField's decoding), Model.from_db (the instances' state saved, `defer`red
    fields left to load on access), each of `annotations` - (attribute, SQL expression) - set on
    them as QuerySet.annotate does. For the few queries an intake batch runs every time: their
    text is written once, so nothing is built or compiled per batch (the ORM: ~0.3-0.5 ms of CPU a
    query). `where` and `order_by` are SQL over the table's own columns, written by the caller -
    never input - with %s placeholders for `params`; tenant-owned models must name the tenant
    there. `source`, when given, is what the rows are selected FROM instead of the table (its
    `params` first): by_each_key's. PostgreSQL or SQLite."""
    connection = transaction.get_connection()
    columns, attnames, converters = _select_list(model, connection.alias, tuple(defer))
    extra = "".join(f", {expression}" for _, expression in annotations)
    locking = " FOR UPDATE" if lock and connection.features.has_select_for_update else ""
    source = source or connection.ops.quote_name(model._meta.db_table)
    sql = (f"SELECT {columns}{extra} FROM {source} WHERE {where}"  # noqa: S608
           + (f" ORDER BY {order_by}" if order_by else "") + locking)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    width = len(attnames)
    out: list[M] = []
    for row in rows:
        values = list(row[:width])
        for position, functions, expression in converters:
            for function in functions:
                values[position] = function(values[position], expression, connection)
        obj = model.from_db(connection.alias, attnames, values)
        for (name, _), value in zip(annotations, row[width:], strict=True):
            setattr(obj, name, value)
        out.append(obj)
    return out


def statistics_refresh(*models_: type[models.Model], lock_timeout_ms: int = 1000) -> bool:
    """ANALYZE these models' tables now (PostgreSQL; elsewhere nothing): for a bulk import, whose
    rows the planner's statistics do not know until autovacuum gets round to them (its naptime is
    a minute, then 10% of the table must have changed). Until then a new tenant's rows look like a
    handful, and a lookup that starts with the tenant (`tenant_id = %s AND upper(bol_number) =
    ANY(...)`) reads all of them through the tenant's index, every batch, growing with the import.

    ANALYZE reads a sample (30,000 rows at the default statistics target) and blocks neither
    reads nor writes; it waits for a VACUUM or ANALYZE already running on the table, so it gives
    up after `lock_timeout_ms` and returns False (as on any other operational error: the refresh is
    only an optimisation). A role that does not own the table gets a warning from the server, not
    an error: the refresh is then autovacuum's alone."""
    connection = transaction.get_connection()
    if not models_ or connection.vendor != "postgresql" or connection.in_atomic_block:
        return False
    names = ", ".join(connection.ops.quote_name(m._meta.db_table) for m in models_)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
            cursor.execute(f"ANALYZE {names}")
    except OperationalError:  # lock_timeout (autovacuum is at it already), or worse: the next query will say
        return False
    return True


def by_each_key(model: type[models.Model], *conditions: tuple[str, str]) -> str:
    """A FROM source (PostgreSQL) that finds the model's rows one key at a time: for each
    (array type, condition), `unnest(%s::type[]) AS each_key(value)` and, for each value, the rows
    WHERE the condition holds - written by the caller over the table's columns and
    `each_key.value`, never input, naming the tenant (see below) - as a LATERAL subquery
    (OFFSET 0: never turned into a join); several of them with UNION ALL (a row found by two keys
    comes twice). Named as the table, so model_rows' column list applies. Params: each array,
    then its condition's own.

    Why: `tenant_id = %s AND key = ANY(%s)` is planned from statistics, and a tenant that has none
    yet (a first import, before autovacuum's first ANALYZE; a new tenant in a big table) looks like
    a handful of rows: PostgreSQL then reads ALL the tenant's rows through its index and filters
    them by the keys, every batch, growing with the import (8 ms a batch at 13,000 shipments).
    Even one key at a time, a tenant the statistics have never seen looks like ONE row, as cheap
    as the key's own: check the tenant on each row without offering its index (`tenant_id + 0 =
    %s`), and give the key an index that starts with it."""
    table = transaction.get_connection().ops.quote_name(model._meta.db_table)
    parts = [f"SELECT {table}.* FROM unnest(%s::{array_type}[]) AS each_key(value)"  # noqa: S608
             f" CROSS JOIN LATERAL (SELECT * FROM {table} WHERE {condition} OFFSET 0) AS {table}"
             for array_type, condition in conditions]
    return f"({' UNION ALL '.join(parts)}) AS {table}"


@lru_cache(maxsize=64)
def _select_list(model: type[models.Model], alias: str, defer: tuple[str, ...]
                 ) -> tuple[str, list[str], list[tuple[int, list[Any], Any]]]:
    """model_rows' column list, the attnames it loads (in the order of the model's fields, as
    from_db takes them) and the converters of each column that has any - as the compiler finds
    them (the backend's, then the field's), with the column expression they are called with."""
    connection = connections[alias]
    quote = connection.ops.quote_name
    fields = [cast("Field[Any, Any]", f) for f in model._meta.concrete_fields if f.name not in defer]
    converters: list[tuple[int, list[Any], Any]] = []
    for position, field in enumerate(fields):
        column = field.get_col(model._meta.db_table)
        functions = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if functions:
            converters.append((position, functions, column))
    table = quote(model._meta.db_table)
    return (", ".join(f"{table}.{quote(str(f.column))}" for f in fields), [f.attname for f in fields],
            converters)


class AnyOf(models.Expression):
    """`expression IN (values)` as a filter, sent on PostgreSQL as `expression = ANY(%s::type[])`:
    ONE array parameter whatever the number of values, so the statement's text is the same for
    every batch (psycopg converts it once) and no placeholder is parsed or adapted per value
    (an IN list of a batch's 300 document tokens, three times over, cost more than the query).
    The array's type is the expression's column type (bigint[], varchar[]), so indexes still
    apply. Elsewhere (the demo's SQLite): the IN list. Same rows either way."""

    conditional = True
    output_field = models.BooleanField()

    def __init__(self, expression: Any, values: Any) -> None:
        super().__init__()
        self.expression: Any = expression if hasattr(expression, "resolve_expression") else models.F(expression)
        self.values = list(values)

    def get_source_expressions(self) -> list[Any]:
        return [self.expression]

    def set_source_expressions(self, exprs: Sequence[Any]) -> None:
        (self.expression,) = exprs

    def as_sql(self, compiler: Any, connection: BaseDatabaseWrapper) -> tuple[str, Any]:
        sql, params = compiler.compile(self.expression)
        if not self.values:
            return "1 = 0", ()
        if connection.vendor == "postgresql":
            array = _array_type(self.expression.output_field, connection)
            return f"{sql} = ANY(%s::{array})", (*params, self.values)
        return f"{sql} IN ({', '.join(['%s'] * len(self.values))})", (*params, *self.values)
