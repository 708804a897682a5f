"""Which databases reconciliation runs on: PostgreSQL only.

A bill of a million lines is loaded with COPY into a temporary table, guarded by an advisory
lock, and matched with statements SQLite does not have (LATERAL joins, ``ON CONFLICT ... RETURNING
xmax``, aggregate ``FILTER``s on temporary tables built in the run's transaction). Rather than
half-work on the embedded development database (``scripts/run.sh``) and fail on the first
PostgreSQL-only statement, a run there is refused with a message that says why, and the sweep
leaves the bills alone.
"""

from __future__ import annotations

from django.db import connection

from paycore.errors import Conflict


class ReconciliationUnsupported(Conflict):
    code = "reconciliation_unsupported"


def reconciliation_supported(vendor: str | None = None) -> bool:
    """True when the database (``vendor``, default the default connection's) can reconcile."""
    return (vendor or connection.vendor) == "postgresql"


def unsupported_message(vendor: str | None = None) -> str:
    return (
        f"reconciliation needs PostgreSQL (COPY, advisory locks, LATERAL joins); this database is "
        f"{vendor or connection.vendor}: nothing was loaded or matched"
    )
