"""One transition table per state machine; an illegal move raises, it is never ignored."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from paycore.errors import IllegalTransition


class TransitionTable:
    def __init__(self, name: str, table: Mapping[str, Iterable[str]]) -> None:
        self.name = name
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
