"""paycore.ids: numbers every channel accepts, sortable by time and never repeated."""

from __future__ import annotations

import re
from collections import Counter

from paycore.ids import new_order_no, new_payment_no

_SHAPE = re.compile(r"^[OP]\d{14}[0-9A-HJKMNP-TV-Z]{12}$")


def test_numbers_have_the_shape_every_channel_accepts() -> None:
    for number in (new_order_no(), new_payment_no()):
        assert _SHAPE.match(number), number
        assert len(number) == 27


def test_random_parts_do_not_repeat_and_use_the_whole_alphabet() -> None:
    tails = [new_payment_no()[15:] for _ in range(20_000)]
    assert len(set(tails)) == len(tails)
    counts = Counter(ch for tail in tails for ch in tail)
    assert len(counts) == 32
    expected = len(tails) * 12 / 32
    assert all(0.9 * expected < n < 1.1 * expected for n in counts.values())  # no character favoured
