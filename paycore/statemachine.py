"""One transition table per state machine; an illegal move raises, it is never ignored.

A table bound to its event model also makes the move: it checks it, writes the append-only
event row and sets the status on the locked row, which the caller saves in the same
transaction. Payments, refunds and orders all move through this one helper.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from paycore.errors import IllegalTransition
from paycore.pii import masked
from paycore.writes import insert_all

if TYPE_CHECKING:
    from django.db import models

    from paycore.models import StateEvent


class TransitionTable:
    """``name`` is the subject's name: the event model's foreign key to the row is ``name`` and
    the row's public number is ``<name>_no`` (payment_no, refund_no, order_no)."""

    def __init__(self, name: str, table: Mapping[str, Iterable[str]], *, event: type[StateEvent] | None = None) -> None:
        self.name = name
        self.event = event
        self._next = {str(src): frozenset(str(dst) for dst in dsts) for src, dsts in table.items()}

    def allows(self, src: str, dst: str) -> bool:
        return str(dst) in self._next.get(str(src), frozenset())

    def check(self, src: str, dst: str, **extra: object) -> None:
        if not self.allows(src, dst):
            raise IllegalTransition(
                f"{self.name} cannot move from {src} to {dst}",
                extra={"from": str(src), "to": str(dst), **{k: str(v) for k, v in extra.items()}},
            )

    def targets(self, src: str) -> frozenset[str]:
        return self._next.get(str(src), frozenset())

    def move(
        self, row: models.Model, to: str, *, source: str, evidence: dict[str, Any] | None = None, actor: str = ""
    ) -> None:
        """Check the move of a locked row, write its event, set its status (the caller saves)."""
        if self.event is None:
            raise TypeError(f"the {self.name} table has no event model to record moves in")
        src = row.status  # type: ignore[attr-defined]
        self.check(src, to, **{f"{self.name}_no": getattr(row, f"{self.name}_no")})
        event = self.event(
            **{self.name: row},
            from_status=src,
            to_status=to,
            source=source,
            evidence=masked(evidence or {}),  # evidence keeps channel payloads: never a payer's identity
            actor=actor,
        )
        insert_all([event])
        row.status = to  # type: ignore[attr-defined]
