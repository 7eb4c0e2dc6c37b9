"""Exact decimal handling for Kraken prices and quantities.

Kraken writes prices and quantities as JSON number *tokens* that carry the engine's precision
(``0.00005100``). Parsing them as floats loses trailing zeros and turns small values into exponents,
which breaks every checksum, so this module only ever handles the token text.

A level is kept as an integer number of ticks at the pair's precision (``62802.5`` at precision 1 is
``628025``): integers order correctly, compare fast, and ``str(ticks)`` *is* the checksum fragment
(Kraken removes the ``.`` and leading zeros). When the precision is unknown the exact token is kept and
ordered as a :class:`~decimal.Decimal`.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

#: Largest decimal exponent accepted in a token; real prices and quantities are far inside it.
MAX_EXPONENT = 40


class NumberError(ValueError):
    """A price or quantity token that cannot be represented exactly."""


def plain_text(token: str) -> str:
    """The token in plain positional notation, digits kept exactly (``5.325e-05`` -> ``0.00005325``)."""
    if "e" in token or "E" in token:
        try:
            value = Decimal(token)
        except InvalidOperation as exc:
            raise NumberError(f"not a number: {token!r}") from exc
        # a hostile exponent ("1e999999999") would expand into gigabytes of digits
        if not value.is_finite() or abs(value.adjusted()) > MAX_EXPONENT:
            raise NumberError(f"not a plausible price or quantity: {token!r}")
        return format(value, "f")
    return token


def scale(token: str, precision: int) -> tuple[int, str]:
    """Return ``(ticks, text)`` for ``token`` written with ``precision`` decimals.

    ``text`` is the token as Kraken writes it (trailing zeros padded to ``precision``). Extra decimals
    are accepted only when they are zeros; anything else would silently change the value.

    >>> scale("0.8", 8)
    (80000000, '0.80000000')
    >>> scale("5.325e-05", 8)
    (5325, '0.00005325')
    """
    # The wire form, exactly `precision` decimals, in as few steps as possible: the dot must sit at
    # its place and only digits remain once it is removed (a second dot fails isdigit).
    dot = len(token) - precision - 1
    if dot > 0 and precision and token[dot] == ".":
        digits = token.replace(".", "", 1)
        if digits.isdigit() and digits.isascii():
            return int(digits), token
    text = plain_text(token) if ("e" in token or "E" in token) else token
    whole, _, frac = text.partition(".")
    if not (whole.isdigit() and text.isascii() and (not frac or frac.isdigit())):
        raise NumberError(f"not a non-negative decimal: {token!r}")
    n = len(frac)
    if n < precision:
        frac = frac + "0" * (precision - n)
    elif n > precision:
        if frac[precision:].strip("0"):
            raise NumberError(
                f"{token!r} has more than {precision} decimals; the instrument precision is stale "
                "(refresh it from the instrument channel)"
            )
        frac = frac[:precision]
    if precision:
        return int(whole + frac), f"{whole}.{frac}"
    return int(whole), whole


def unscaled(token: str) -> tuple[Decimal, str]:
    """Return ``(value, text)`` for a token when no precision is known: the exact wire text."""
    text = plain_text(token)
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise NumberError(f"not a number: {token!r}") from exc
    if not value.is_finite() or value < 0:
        raise NumberError(f"not a non-negative decimal: {token!r}")
    return value, text


def fragment(text: str) -> str:
    """Checksum fragment of a decimal text: ``.`` removed, leading zeros stripped."""
    return text.replace(".", "").lstrip("0")


def format_ticks(ticks: int, precision: int) -> str:
    """Inverse of :func:`scale`: ``format_ticks(80000000, 8) == '0.80000000'``."""
    if not precision:
        return str(ticks)
    digits = str(ticks).rjust(precision + 1, "0")
    return f"{digits[:-precision]}.{digits[-precision:]}"
