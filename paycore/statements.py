"""Server-side prepared statements for the SQL the hot paths build once per process.

PostgreSQL parses and plans every statement it is sent as text. For the short statements of the
hot paths (a payment joined to its maps and orders, a new order's INSERT) that is a large part
of the server's work: measured at 0.19-0.36 ms of backend CPU per SELECT sent as text against
0.12-0.21 ms prepared, and 0.23 ms against 0.20 ms per INSERT. paycore already builds that SQL
once per process (``paycore.prepared.PreparedQuery``, ``paycore.writes``, the inbox INSERT);
``execute`` sends each such statement to the server once per connection (``PREPARE``) and from
then on only ``EXECUTE``s it with its values.

Statements are sent as text where they cannot outlive a transaction on the server: on other
databases (SQLite), and behind a pooler in transaction mode, which a deployment declares with
``DATABASE_DISABLE_SERVER_SIDE_CURSORS`` (the setting that turns server-side cursors off for the
same reason). A migration that changes the type of a column a prepared statement returns makes
that statement fail until the process reconnects: deploys restart the workers after migrating.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from django.db.backends.utils import CursorWrapper

# A list argument or a multi-row INSERT is a statement per length: past this many on one
# connection, new ones go as text, so a backend's plan cache stays bounded.
MAX_PER_CONNECTION = 200
_PLACEHOLDER = re.compile(r"%s|%%")
_names: dict[str, str] = {}  # statement name -> its SQL, for reading logs and captured queries


def execute(cursor: CursorWrapper, sql: str, params: Sequence[Any]) -> None:
    """``cursor.execute(sql, params)``, as a prepared statement where the server keeps one."""
    db = cursor.db
    if db.vendor != "postgresql" or db.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS"):
        cursor.execute(sql, params)
        return
    name, text, call = _statement(sql, len(params))
    prepared = _prepared_on(db)
    if name not in prepared:
        if len(prepared) >= MAX_PER_CONNECTION:  # rare shapes (long lists) past the common ones
            cursor.execute(sql, params)
            return
        cursor.execute(f"PREPARE {name} AS {text}")
        prepared.add(name)
    cursor.execute(call, params)


def source(sql: str) -> str:
    """The SQL behind an ``EXECUTE`` this module sent (anything else as it is)."""
    match = re.match(r"(?:EXECUTE|PREPARE) (pc_[0-9a-f]+)", sql)
    return _names.get(match.group(1), sql) if match else sql


def _prepared_on(db: Any) -> set[str]:
    """The statements prepared on the wrapper's current server connection (a reconnect, or
    another thread's wrapper, starts with none)."""
    raw = db.connection
    known: tuple[Any, set[str]] | None = getattr(db, "_paycore_prepared", None)
    if known is None or known[0] is not raw:
        known = (raw, set())
        db._paycore_prepared = known
    return known[1]


@lru_cache(maxsize=1024)
def _statement(sql: str, count: int) -> tuple[str, str, str]:
    """(name, the statement with $n placeholders, the EXECUTE taking ``count`` values)."""
    takes = _PLACEHOLDER.findall(sql).count("%s")
    if takes != count:
        raise ValueError(f"the statement takes {takes} values, not {count}: {sql[:80]}")
    numbers = iter(range(1, count + 1))
    text = _PLACEHOLDER.sub(lambda m: "%" if m.group(0) == "%%" else f"${next(numbers)}", sql)
    name = "pc_" + hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:24]
    _names[name] = sql
    call = f"EXECUTE {name} ({', '.join(['%s'] * count)})" if count else f"EXECUTE {name}"
    return name, text, call
