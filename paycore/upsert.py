"""``INSERT ... ON CONFLICT DO NOTHING RETURNING id`` for one model instance.

Where a unique constraint is the lock (an Idempotency-Key), the usual try/``IntegrityError``
needs a savepoint inside a transaction (two more round trips, and a failed statement to roll back
to); this is one statement either way, and works in autocommit and inside ``atomic`` alike. Both
PostgreSQL and SQLite (3.35+) take it; a concurrent insert of the same key waits for the other
transaction and then does nothing.
"""

from __future__ import annotations

from functools import cache

from django.db import connection, models


def insert_unless_exists(instance: models.Model, *, conflict_fields: tuple[str, ...]) -> bool:
    """INSERT the instance unless a row with the same ``conflict_fields`` exists (those must be
    a unique constraint's). True, with ``instance.pk`` set, if it was inserted."""
    model = type(instance)
    fields = _fields(model)
    values = [f.get_db_prep_save(f.pre_save(instance, True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(_sql(model, conflict_fields), values)
        row = cursor.fetchone()
    if row is None:
        return False
    instance.pk = row[0]
    instance._state.adding, instance._state.db = False, connection.alias
    return True


@cache
def _fields(model: type[models.Model]) -> list[models.Field]:
    return [f for f in model._meta.local_concrete_fields if not f.primary_key]


@cache
def _sql(model: type[models.Model], conflict_fields: tuple[str, ...]) -> str:
    q = connection.ops.quote_name
    meta = model._meta
    columns = ", ".join(q(f.column) for f in _fields(model))
    placeholders = ", ".join("%s" for _ in _fields(model))
    by_name = {f.name: f for f in _fields(model)}
    conflict = ", ".join(q(by_name[name].column) for name in conflict_fields)
    # Identifiers come from the model's own metadata; every value is a parameter.
    return (
        f"INSERT INTO {q(meta.db_table)} ({columns}) VALUES ({placeholders}) "  # noqa: S608
        f"ON CONFLICT ({conflict}) DO NOTHING RETURNING {q(meta.pk.column)}"
    )
