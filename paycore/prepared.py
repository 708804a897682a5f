"""Querysets compiled to SQL once per process, then run with new values.

Django compiles a queryset to SQL every time it is evaluated. On the reads every request makes
(the payment status read that app backends poll, the rows a callback resolves) that compile
costs a worker more CPU than PostgreSQL spends answering: profiled, 40% of a GET of a payment.
A ``PreparedQuery`` builds its queryset once with placeholder values, keeps the SQL and the
compiler's row layout, and afterwards only binds the caller's values and turns rows into model
instances the way the queryset would (``select_related``, ``only``/``defer``, annotations and
row locks included). The queryset stays the one definition of the query.

Only what can be compiled once is accepted: keyword arguments that are ``int`` or ``str``, or
lists of them, and reach the SQL unchanged as parameters (an ``exact`` or ``in`` lookup, say; a
``contains`` lookup rewrites its value and is refused), and plain model querysets without
``prefetch_related``. A list compiles to one placeholder per element, so the SQL is kept per
list length (``pk__in`` of one order, of two...); an empty list is refused, as its meaning
depends on the rest of the query, and so is one of more than 10,000 values.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.db import connections, models
from django.db.models.query import ModelIterable, QuerySet, get_related_populators  # type: ignore[attr-defined]
from django.db.models.sql.compiler import SQLCompiler
from django.db.transaction import TransactionManagementError

from paycore import statements

M = TypeVar("M", bound=models.Model)

# Values no caller passes, recognisable among the compiled query's parameters. The integers sit
# inside every integer column's range but the small ones': Django drops a comparison with a value
# out of the column's range from the SQL, and the placeholder would be missing.
_INT_BASE = 2_140_000_000
_INT_SPAN = 10_000  # placeholders per argument: a longer list is refused
_STR_MARK = "\uf8ffprepared:"
_KINDS: dict[Any, tuple[type, bool]] = {
    int: (int, False),
    str: (str, False),
    list[int]: (int, True),
    list[str]: (str, True),
}


@dataclass(frozen=True)
class _Compiled:
    sql: str
    # Each parameter: the caller's argument name (and the list index, for a list), or None and
    # a constant compiled into the query.
    slots: tuple[tuple[str | None, int | None, Any], ...]
    compiler: SQLCompiler
    init_list: list[str]
    start: int
    end: int
    populators: list[Any]
    annotations: dict[str, int]
    locks: bool
    # (position, converters, expression) of each column whose value the fields convert.
    converters: tuple[tuple[int, tuple[Any, ...], Any], ...]


class PreparedQuery(Generic[M]):
    """``PreparedQuery(build)(**values)`` is ``list(build(**values))``, compiled once.

    ``build`` takes keyword-only arguments annotated ``int``, ``str``, ``list[int]`` or
    ``list[str]`` and returns the queryset; it is called once per database alias, list lengths
    and process, with placeholders."""

    def __init__(self, build: Callable[..., QuerySet[M]]) -> None:
        self._build = build
        hints = inspect.get_annotations(build, eval_str=True)
        self._kinds: dict[str, tuple[type, bool]] = {}
        for name in inspect.signature(build).parameters:
            kind = _KINDS.get(hints.get(name))
            if kind is None:
                raise TypeError(f"{build.__qualname__}: argument {name!r} must be annotated int, str or a list of them")
            self._kinds[name] = kind
        self._compiled: dict[tuple[str, tuple[int, ...]], _Compiled] = {}

    def __call__(self, *, using: str = "default", **values: Any) -> list[M]:
        lengths = tuple(len(values[name]) for name, (_, many) in self._kinds.items() if many)
        if 0 in lengths or any(n > _INT_SPAN for n in lengths):
            raise ValueError(f"{self._build.__qualname__}: a list of 1 to {_INT_SPAN} values is required")
        compiled = self._compiled.get((using, lengths)) or self._compile(using, lengths)
        connection = connections[using]
        if compiled.locks and connection.get_autocommit():
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        params = [
            constant if name is None else values[name] if index is None else values[name][index]
            for name, index, constant in compiled.slots
        ]
        with connection.cursor() as cursor:
            statements.execute(cursor, compiled.sql, params)
            rows = cursor.fetchall()
        return [self._instance(compiled, using, _converted(row, compiled, connection)) for row in rows]

    def _compile(self, using: str, lengths: tuple[int, ...]) -> _Compiled:
        sizes = iter(lengths)
        placeholders: dict[str, Any] = {}
        where: dict[Any, tuple[str, int | None]] = {}
        for i, (name, (kind, many)) in enumerate(self._kinds.items()):
            indexes: list[int | None] = list(range(next(sizes))) if many else [None]
            marks = [_INT_BASE + _INT_SPAN * i + (j or 0) if kind is int else f"{_STR_MARK}{name}:{j}" for j in indexes]
            where.update({mark: (name, j) for mark, j in zip(marks, indexes, strict=True)})
            placeholders[name] = marks if many else marks[0]
        queryset = self._build(**placeholders)
        if queryset._iterable_class is not ModelIterable or queryset._prefetch_related_lookups:  # type: ignore[attr-defined]
            raise TypeError(f"{self._build.__qualname__}: only plain model querysets can be prepared")
        compiler = queryset.query.get_compiler(using=using)
        sql, params = compiler.as_sql()
        slots = tuple((*where[p], None) if _hashable(p) and p in where else (None, None, p) for p in params)
        missing = set(where.values()) - {(name, index) for name, index, _ in slots if name is not None}
        if missing:
            names = sorted({name for name, _ in missing})
            raise TypeError(f"{self._build.__qualname__}: {names} do not reach the SQL as parameters")
        columns = [column[0] for column in compiler.select[: compiler.col_count]]
        if compiler.has_composite_fields(columns):
            raise TypeError(f"{self._build.__qualname__}: composite keys are not supported")
        klass_info = compiler.klass_info
        assert klass_info is not None  # a model queryset always selects its model
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        compiled = _Compiled(
            sql=sql,
            slots=slots,
            compiler=compiler,
            init_list=[column[0].target.attname for column in compiler.select[start:end]],
            start=start,
            end=end,
            populators=get_related_populators(klass_info, compiler.select, using),
            annotations=dict(compiler.annotation_col_map or {}),
            locks=bool(queryset.query.select_for_update),
            converters=tuple(
                (position, tuple(functions), expression)
                for position, (functions, expression) in compiler.get_converters(columns).items()
            ),
        )
        self._compiled[(using, lengths)] = compiled
        return compiled

    @staticmethod
    def _instance(compiled: _Compiled, using: str, row: Any) -> M:
        model: type[M] = compiled.compiler.klass_info["model"]
        obj = model.from_db(using, compiled.init_list, row[compiled.start : compiled.end])
        for populator in compiled.populators:
            populator.populate(row, obj)
        for name, position in compiled.annotations.items():
            setattr(obj, name, row[position])
        return obj


def _converted(row: tuple[Any, ...], compiled: _Compiled, connection: Any) -> Any:
    """The row with each column converted as the queryset would (with this thread's connection)."""
    if not compiled.converters:
        return row
    values = list(row)
    for position, functions, expression in compiled.converters:
        value = values[position]
        for convert in functions:
            value = convert(value, expression, connection)
        values[position] = value
    return values


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True
