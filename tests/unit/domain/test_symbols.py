import pytest

from models.symbols import normalize, to_exchange

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("wire", "norm"), [("BTC/USD", "BTC-USD"), ("XBT/USD", "BTC-USD"), ("XDG/EUR", "DOGE-EUR"),
                                            ("PEPE/USD", "PEPE-USD"), ("ETH/XBT", "ETH-BTC")])
def test_normalize(wire: str, norm: str) -> None:
    assert normalize(wire) == norm


def test_to_exchange_maps_legacy_names_to_v2() -> None:
    assert to_exchange("BTC-USD") == "BTC/USD"
    assert to_exchange("XBT-EUR") == "BTC/EUR"
