"""Row writes on hot paths, with their SQL built once per model.

``QuerySet.update`` and ``bulk_create`` compile their statement on every call, which on the
request paths that create orders and payments cost more CPU than the statements themselves.
These build the SQL from the model's metadata once per process and only bind values, prepared
by each field exactly as the ORM would (encrypted fields encrypt, JSON is adapted).

``insert_unless_exists`` is ``INSERT ... ON CONFLICT DO NOTHING RETURNING id``: where a unique
constraint is the lock (an Idempotency-Key), the usual try/``IntegrityError`` needs a savepoint
inside a transaction (two more round trips, and a failed statement to roll back to); this is one
statement either way, and works in autocommit and inside ``atomic`` alike. Both PostgreSQL and
SQLite (3.35+) take it; a concurrent insert of the same key waits for the other transaction and
then does nothing.
"""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Callable, Sequence
from functools import cache, lru_cache
from typing import Any, TypeVar

from django.db import DatabaseError, connection, models, transaction

from paycore import statements

M = TypeVar("M", bound=models.Model)


def insert_unless_exists(instance: models.Model, *, conflict_fields: tuple[str, ...]) -> bool:
    """INSERT the instance unless a row with the same ``conflict_fields`` exists (those must be
    a unique constraint's). True, with ``instance.pk`` set, if it was inserted."""
    model = type(instance)
    with connection.cursor() as cursor:
        statements.execute(cursor, _insert_sql(model, 1, conflict_fields), _values(instance))
        row = cursor.fetchone()
    if row is None:
        return False
    _saved(instance, row[0])
    return True


def insert_all(instances: Sequence[M]) -> list[M]:
    """``bulk_create`` of new rows of one model in one statement, primary keys set."""
    if not instances:
        return list(instances)
    model = type(instances[0])
    values = [value for instance in instances for value in _values(instance)]
    with connection.cursor() as cursor:
        statements.execute(cursor, _insert_sql(model, len(instances), None), values)
        keys = [row[0] for row in cursor.fetchall()]
    # PostgreSQL and SQLite return the rows of a multi-row VALUES in its order.
    for instance, key in zip(instances, keys, strict=True):
        _saved(instance, key)
    return list(instances)


def insert_family(
    parent: models.Model,
    *,
    conflict_fields: tuple[str, ...],
    children: Sequence[models.Model] = (),
    link: str = "",
    followers: Callable[[], Sequence[models.Model]] | None = None,
) -> bool:
    """INSERT ``parent`` unless a row with the same ``conflict_fields`` exists and, only if it
    was inserted, its ``children`` (whose foreign key ``link`` is set to it here) and the rows
    ``followers`` returns (of other tables): all or nothing. False, nothing written, if the
    parent existed.

    On PostgreSQL this is one statement, atomic in autocommit, so the rows are written without a
    transaction's BEGIN and COMMIT round trips; elsewhere, the same inserts in one transaction.
    A follower's or child's own unique violation fails the whole write (``IntegrityError``):
    inside a transaction the caller needs a savepoint around it. ``followers`` is called once the
    parent's values are set (``auto_now`` stamped), so a row describing the parent shows them.
    Primary keys are set on every row written."""
    if connection.vendor != "postgresql":
        return _insert_family_in_turn(parent, conflict_fields, children, link, followers)
    values = _values(parent)
    for child in children:  # the link's value is the parent's key, which the statement supplies
        values += [v for (f, _), v in zip(insert_plan(type(child)), _values(child), strict=True) if f.name != link]
    rows = list(followers()) if followers is not None else []
    for row in rows:
        values += _values(row)
    shape = (type(children[0]) if children else None, len(children), tuple(type(r) for r in rows))
    with connection.cursor() as cursor:
        statements.execute(cursor, _family_sql(type(parent), conflict_fields, link, *shape), values)
        written = cursor.fetchone()
    if written is None:
        return False
    _saved(parent, written[0])
    for child, key in zip(children, written[1] or [], strict=True):
        setattr(child, link, parent)  # the parent's key is known now: the child's column holds it
        _saved(child, key)
    for row, key in zip(rows, written[2:], strict=True):
        _saved(row, key)
    return True


def _insert_family_in_turn(
    parent: models.Model,
    conflict_fields: tuple[str, ...],
    children: Sequence[models.Model],
    link: str,
    followers: Callable[[], Sequence[models.Model]] | None,
) -> bool:
    """``insert_family`` where a data-modifying WITH is not available (SQLite)."""
    with transaction.atomic(savepoint=False):
        if not insert_unless_exists(parent, conflict_fields=conflict_fields):
            return False
        for child in children:
            setattr(child, link, parent)  # built before the parent had its key
        insert_all(children)
        for row in followers() if followers is not None else ():
            insert_all([row])
    return True


def save_fields(instance: models.Model, *names: str) -> None:
    """``instance.save(update_fields=names)`` of a model without its own ``save`` or save
    signals: ``auto_now`` columns named are stamped on the instance, as ``save`` does."""
    model = type(instance)
    values = {name: _column(model, name).pre_save(instance, False) for name in names}
    if update_columns(model, instance.pk, **values) != 1:  # as Model.save(update_fields=...) refuses
        raise DatabaseError(f"saving {model.__name__} {instance.pk} affected no row")


def update_columns(model: type[models.Model], pk: Any, **values: Any) -> int:
    """``model.objects.filter(pk=pk).update(**values)`` for plain values (no expressions)."""
    fields = tuple(sorted(values))
    vendor = connection.vendor
    params = [_column_preparer(model, name, vendor)(values[name]) for name in fields]
    with connection.cursor() as cursor:
        statements.execute(cursor, _update_sql(model, fields), [*params, pk])
        return cursor.rowcount


def insert_plan(model: type[models.Model]) -> list[tuple[models.Field, Callable[[Any], Any]]]:
    """``insert_fields``, each with the function that prepares its value for the database: the
    field's ``get_db_prep_save``, skipped where it would hand the value back unchanged (a ``str``
    for a plain ``CharField``...). For a hand-written INSERT too."""
    return _insert_plan(model, connection.vendor)


def _values(instance: models.Model) -> list[Any]:
    return [prepare(f.pre_save(instance, True)) for f, prepare in insert_plan(type(instance))]


@cache
def _insert_plan(model: type[models.Model], vendor: str) -> list[tuple[models.Field, Callable[[Any], Any]]]:
    return [(f, _preparer(f, vendor)) for f in insert_fields(model)]


# Field classes whose preparation returns a value of this type as it is. Exact classes only: a
# subclass (an encrypted field) may prepare differently.
_AS_IS: dict[type[models.Field], type] = {
    **dict.fromkeys((models.CharField, models.TextField, models.SlugField, models.URLField), str),
    **dict.fromkeys(
        (
            models.IntegerField,
            models.BigIntegerField,
            models.SmallIntegerField,
            models.PositiveIntegerField,
            models.PositiveBigIntegerField,
            models.PositiveSmallIntegerField,
            models.AutoField,
            models.BigAutoField,
        ),
        int,
    ),
    models.BooleanField: bool,
}
# PostgreSQL's adapter takes these as they are (SQLite's backend turns them into text).
_AS_IS_POSTGRESQL: dict[type[models.Field], type] = {
    models.DateTimeField: datetime.datetime,
    models.UUIDField: uuid.UUID,
}


def _preparer(field: models.Field, vendor: str) -> Callable[[Any], Any]:
    target: models.Field = field.target_field if isinstance(field, models.ForeignKey) else field
    kind = _AS_IS.get(type(target)) or (_AS_IS_POSTGRESQL.get(type(target)) if vendor == "postgresql" else None)
    slow = field.get_db_prep_save

    if kind is None:
        return lambda value: slow(value, connection)
    if kind is datetime.datetime:  # a naive one gets the ORM's warning and conversion

        def prepare_datetime(value: Any) -> Any:
            plain = value is None or (type(value) is datetime.datetime and value.tzinfo is not None)
            return value if plain else slow(value, connection)

        return prepare_datetime

    def prepare(value: Any) -> Any:
        return value if value is None or type(value) is kind else slow(value, connection)

    return prepare


def _saved(instance: models.Model, key: Any) -> None:
    instance.pk = key
    instance._state.adding, instance._state.db = False, connection.alias


@cache
def insert_fields(model: type[models.Model]) -> list[models.Field]:
    """The columns an INSERT of a new row writes (all but the generated key), in model order."""
    return [f for f in model._meta.local_concrete_fields if not f.primary_key]


@lru_cache(maxsize=512)  # a statement per model and row count
def _insert_sql(model: type[models.Model], rows: int, conflict_fields: tuple[str, ...] | None) -> str:
    q = connection.ops.quote_name
    meta = model._meta
    columns = ", ".join(q(f.column) for f in insert_fields(model))
    row = "(" + ", ".join("%s" for _ in insert_fields(model)) + ")"
    on_conflict = ""
    if conflict_fields is not None:
        by_name = {f.name: f for f in insert_fields(model)}
        on_conflict = " ON CONFLICT (" + ", ".join(q(by_name[name].column) for name in conflict_fields) + ") DO NOTHING"
    # Identifiers come from the model's own metadata; every value is a parameter.
    return (
        f"INSERT INTO {q(meta.db_table)} ({columns}) VALUES {', '.join([row] * rows)}"  # noqa: S608
        f"{on_conflict} RETURNING {q(meta.pk.column)}"
    )


@lru_cache(maxsize=128)  # a statement per shape and number of children
def _family_sql(
    parent: type[models.Model],
    conflict_fields: tuple[str, ...],
    link: str,
    child: type[models.Model] | None,
    children: int,
    followers: tuple[type[models.Model], ...],
) -> str:
    q = connection.ops.quote_name
    parent_pk = q(parent._meta.pk.column)
    parts = [f"parent AS ({_insert_sql(parent, 1, conflict_fields)})"]
    child_keys = "NULL::bigint[]"
    if child is not None and children:
        fields = insert_fields(child)
        values = ", ".join(f"{_typed(f)} AS {q(f.column)}" for f in fields if f.name != link)
        rows = " UNION ALL ".join([f"SELECT {values}"] * children)
        chosen = ", ".join(f"parent.{parent_pk}" if f.name == link else f"v.{q(f.column)}" for f in fields)
        parts.append(
            f"children AS (INSERT INTO {q(child._meta.db_table)} ({', '.join(q(f.column) for f in fields)}) "  # noqa: S608
            f"SELECT {chosen} FROM parent CROSS JOIN ({rows}) AS v RETURNING {q(child._meta.pk.column)} AS id)"
        )
        child_keys = "(SELECT array_agg(id ORDER BY id) FROM children)"
    for n, model in enumerate(followers):
        fields = insert_fields(model)
        parts.append(
            f"follower{n} AS (INSERT INTO {q(model._meta.db_table)} ({', '.join(q(f.column) for f in fields)}) "  # noqa: S608
            f"SELECT {', '.join(_typed(f) for f in fields)} FROM parent RETURNING {q(model._meta.pk.column)} AS id)"
        )
    follower_keys = "".join(f", (SELECT id FROM follower{n})" for n in range(len(followers)))  # noqa: S608
    return f"WITH {', '.join(parts)} SELECT parent.{parent_pk}, {child_keys}{follower_keys} FROM parent"  # noqa: S608


def _typed(field: models.Field) -> str:
    """A value placeholder cast to the column's type without its length or precision, which an
    explicit cast would silently cut to (the column itself still refuses a value too long)."""
    return f"CAST(%s AS {_TYPE_MODIFIER.sub('', field.db_type(connection) or 'text')})"


_TYPE_MODIFIER = re.compile(r"\(.*\)$")


@cache
def _update_sql(model: type[models.Model], fields: tuple[str, ...]) -> str:
    q = connection.ops.quote_name
    meta = model._meta
    assignments = ", ".join(f"{q(_column(model, name).column)} = %s" for name in fields)
    return f"UPDATE {q(meta.db_table)} SET {assignments} WHERE {q(meta.pk.column)} = %s"  # noqa: S608


@cache
def _column_preparer(model: type[models.Model], name: str, vendor: str) -> Callable[[Any], Any]:
    return _preparer(_column(model, name), vendor)


def _column(model: type[models.Model], name: str) -> models.Field:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field) and field.concrete, f"{model.__name__}.{name} is not a column"
    return field
