"""Points wire values: integer points <-> paycore minor units, times, and unreadable replies.

``points = amount * points_per_minor_unit``; points that are not a whole number of minor units
are an unreadable reply, never rounded. Times are RFC 3339 with an offset.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from channels.base import ChannelUnavailable


def unreadable(what: str) -> ChannelUnavailable:
    return ChannelUnavailable(f"points: unreadable reply ({what})", code="UNREADABLE_REPLY")


def to_points(amount: int, rate: int) -> int:
    return amount * rate


def to_minor(points: int, rate: int) -> int:
    minor, rest = divmod(points, rate)
    if rest:
        raise unreadable(f"{points} points is not a whole number of minor units")
    return minor


def parse_time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise unreadable(f"time {value!r}") from None
    if parsed.tzinfo is None:
        raise unreadable(f"time without offset {value!r}")
    return parsed


def points_field(obj: Mapping[str, Any], name: str) -> int:
    value = obj.get(name)
    if type(value) is not int or value < 0:  # bool is not a points amount either
        raise unreadable(f"{name}={value!r}")
    return value
