"""paycore.money: one ISO 4217 exponent table and exact decimal text <-> minor units."""

from __future__ import annotations

import pytest

from paycore import money


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (990, "CNY", "9.90"),
        (1, "CNY", "0.01"),
        (0, "USD", "0.00"),
        (-5, "USD", "-0.05"),
        (990, "JPY", "990"),
        (100000, "KRW", "100000"),
        (1234, "KWD", "1.234"),
        (7, "BHD", "0.007"),
        (123456789012, "USD", "1234567890.12"),
        (10**40 + 1, "CNY", "100000000000000000000000000000000000000.01"),  # no float, no context rounding
    ],
)
def test_minor_units_and_decimal_text_convert_exactly_both_ways(minor: int, currency: str, text: str) -> None:
    assert money.minor_to_decimal(minor, currency) == text
    assert money.decimal_to_minor(text, currency) == minor


@pytest.mark.parametrize(("text", "minor"), [("9.900", 990), ("7", 700), ("123.4", 12340), ("-0.00", 0)])
def test_plain_decimal_variants_are_read_exactly(text: str, minor: int) -> None:
    assert money.decimal_to_minor(text, "CNY") == minor


@pytest.mark.parametrize(
    ("text", "currency"),
    [("1.005", "CNY"), ("1.5", "JPY"), ("0.0001", "KWD"), ("0.001", "USD")],
)
def test_a_fraction_of_a_minor_unit_is_refused_never_rounded(text: str, currency: str) -> None:
    with pytest.raises(ValueError, match="minor units"):
        money.decimal_to_minor(text, currency)


@pytest.mark.parametrize("text", ["", " 9.90", "9.90 ", "+1", "1e2", "NaN", "Infinity", ".5", "5.", "1,00", "９.９０"])
def test_anything_but_plain_decimal_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="plain decimal"):
        money.decimal_to_minor(text, "CNY")


def test_unknown_currency_raises_instead_of_guessing_an_exponent() -> None:
    for call in (lambda: money.minor_to_decimal(100, "XXX"), lambda: money.decimal_to_minor("1.00", "XXX")):
        with pytest.raises(ValueError, match="XXX"):
            call()
    assert money.exponent("JPY") == 0 and money.exponent("CNY") == 2 and money.exponent("KWD") == 3


@pytest.mark.parametrize("amount", [9.9, "990", True, None])
def test_only_integer_minor_units_are_formatted(amount: object) -> None:
    with pytest.raises(TypeError):
        money.minor_to_decimal(amount, "CNY")  # type: ignore[arg-type]
