from decimal import Decimal

import pytest

from models.numbers import NumberError, format_ticks, fragment, plain_text, scale, unscaled

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("token", "precision", "ticks", "text"),
    [
        ("62802.5", 1, 628025, "62802.5"),
        ("0.00100000", 8, 100000, "0.00100000"),
        ("0.8", 8, 80000000, "0.80000000"),  # re-serialised through a float: trailing zeros lost
        ("4.0", 8, 400000000, "4.00000000"),
        ("4", 8, 400000000, "4.00000000"),
        ("5.325e-05", 8, 5325, "0.00005325"),  # nlohmann/json exponent rendering
        ("0.0280", 4, 280, "0.0280"),
        ("105906", 0, 105906, "105906"),
        ("105906.000", 0, 105906, "105906"),
        ("0.0000000123", 10, 123, "0.0000000123"),
    ],
)
def test_scale_gives_ticks_and_kraken_text(token: str, precision: int, ticks: int, text: str) -> None:
    assert scale(token, precision) == (ticks, text)
    assert format_ticks(ticks, precision) == text
    assert fragment(text) == str(ticks)


@pytest.mark.parametrize("token", ["0.123", "1.05"])
def test_scale_refuses_digits_beyond_precision(token: str) -> None:
    with pytest.raises(NumberError, match="instrument precision is stale"):
        scale(token, 1)


@pytest.mark.parametrize("token", ["-1.5", "abc", "1.2.3", "", "１２", "nan", "1e999999999999"])
def test_scale_refuses_non_numbers(token: str) -> None:
    with pytest.raises(NumberError):
        scale(token, 2)


def test_unscaled_keeps_wire_text() -> None:
    value, text = unscaled("0.00005100")
    assert text == "0.00005100" and str(value) == "0.00005100"
    assert plain_text("5.325e-05") == "0.00005325"
    assert fragment("0.00005100") == "5100"
    assert fragment("45285.2") == "452852"


@pytest.mark.parametrize(
    ("token", "precision"),
    [("1.2.3", 1), ("1..2", 1), ("12.", 0), (".5", 1), ("１.2", 1), ("1.２", 1), ("1_0.5", 1), ("+1.5", 1),
     (" 1.5", 1), ("1.5 ", 2), ("0x1.5", 1)],
)
def test_scale_wire_form_fast_path_agrees_with_decimal(token: str, precision: int) -> None:
    """Tokens shaped almost like the wire form: exact ticks or a NumberError, never a guess."""
    try:
        ticks, text = scale(token, precision)
    except NumberError:
        return
    assert Decimal(text) == Decimal(token) and ticks == int(Decimal(text).scaleb(precision))
    assert format_ticks(ticks, precision) == text
