"""Reading captured queries when hot statements run prepared (``paycore.statements``)."""

from __future__ import annotations

from django.test.utils import CaptureQueriesContext

from paycore.statements import source


def executed(queries: CaptureQueriesContext) -> list[str]:
    """The SQL of each statement run, in order: a prepared statement's ``EXECUTE`` as its source
    SQL, and its one-time ``PREPARE`` on a connection left out."""
    return [source(q["sql"]) for q in queries.captured_queries if not q["sql"].startswith("PREPARE ")]
