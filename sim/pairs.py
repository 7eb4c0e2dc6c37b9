"""The simulated market's pairs: realistic prices, precisions (0-10 decimals) and activity."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PairSpec:
    """A tradable pair as the ``instrument`` channel describes it, plus simulation parameters."""

    symbol: str
    price_precision: int
    qty_precision: int
    price: str  # a typical mid price, decimal string
    qty: str  # a typical level size, decimal string
    activity: float  # relative share of the market's events

    @property
    def base(self) -> str:
        return self.symbol.split("/")[0]

    @property
    def quote(self) -> str:
        return self.symbol.split("/")[1]


# symbol, price decimals, qty decimals, mid price, typical size, activity
_CATALOGUE: tuple[tuple[str, int, int, str, str, float], ...] = (
    ("BTC/USD", 1, 8, "62800.0", "0.25", 10.0),
    ("ETH/USD", 2, 8, "3400.00", "2.0", 8.0),
    ("SOL/USD", 2, 8, "150.00", "20", 5.0),
    ("XRP/USD", 5, 8, "0.60000", "2000", 4.0),
    ("DOGE/USD", 7, 8, "0.1500000", "10000", 3.0),
    ("ADA/USD", 6, 8, "0.450000", "3000", 2.0),
    ("DOT/USD", 4, 8, "6.5000", "300", 1.5),
    ("LINK/USD", 5, 8, "14.00000", "100", 1.5),
    ("LTC/USD", 2, 8, "80.00", "20", 1.5),
    ("BCH/USD", 2, 8, "380.00", "3", 1.0),
    ("AVAX/USD", 2, 8, "28.00", "50", 1.2),
    ("ATOM/USD", 4, 8, "7.5000", "200", 1.0),
    ("UNI/USD", 3, 8, "8.000", "150", 1.0),
    ("XLM/USD", 6, 8, "0.110000", "10000", 1.0),
    ("ALGO/USD", 5, 8, "0.18000", "5000", 0.8),
    ("MATIC/USD", 4, 8, "0.5500", "2000", 0.8),
    ("SHIB/USD", 9, 5, "0.000018000", "50000000", 1.5),
    ("PEPE/USD", 10, 2, "0.0000098000", "100000000", 1.5),
    ("BONK/USD", 10, 5, "0.0000210000", "50000000", 1.0),
    ("FLOKI/USD", 8, 4, "0.00015000", "5000000", 0.6),
    ("MINA/GBP", 4, 8, "0.4200", "500", 0.4),
    ("BTC/EUR", 1, 8, "57800.0", "0.2", 5.0),
    ("ETH/EUR", 2, 8, "3130.00", "2.0", 3.0),
    ("BTC/GBP", 1, 8, "49500.0", "0.1", 2.0),
    ("BTC/JPY", 0, 8, "9400000", "0.05", 1.0),
    ("ETH/JPY", 0, 8, "510000", "1.0", 0.5),
    ("BTC/USDT", 1, 8, "62790.0", "0.2", 4.0),
    ("ETH/USDT", 2, 8, "3399.00", "2.0", 3.0),
    ("USDT/USD", 5, 2, "1.00010", "50000", 2.0),
    ("USDC/USD", 5, 2, "0.99990", "50000", 1.5),
    ("EUR/USD", 5, 2, "1.08650", "10000", 1.0),
    ("GBP/USD", 5, 2, "1.26850", "8000", 0.8),
    ("XMR/USD", 2, 8, "160.00", "10", 0.5),
    ("ETC/USD", 3, 8, "23.000", "50", 0.5),
    ("FIL/USD", 3, 8, "4.500", "200", 0.5),
    ("NEAR/USD", 3, 8, "5.200", "200", 0.6),
    ("APT/USD", 4, 8, "8.5000", "100", 0.5),
    ("ARB/USD", 4, 8, "0.8000", "1000", 0.6),
    ("OP/USD", 4, 8, "1.7000", "500", 0.5),
    ("INJ/USD", 3, 8, "22.000", "40", 0.4),
    ("AAVE/USD", 2, 8, "140.00", "5", 0.4),
    ("MKR/USD", 1, 8, "2300.0", "0.5", 0.3),
    ("SUI/USD", 4, 8, "1.1000", "800", 0.5),
    ("TIA/USD", 4, 8, "5.6000", "150", 0.3),
    ("SEI/USD", 5, 8, "0.35000", "3000", 0.3),
    ("WIF/USD", 4, 5, "1.8000", "500", 0.5),
    ("TRX/USD", 6, 8, "0.160000", "8000", 0.4),
    ("XTZ/USD", 4, 8, "0.7500", "1000", 0.2),
    ("EOS/USD", 4, 8, "0.5500", "1000", 0.2),
    ("KSM/USD", 2, 8, "22.00", "20", 0.2),
    ("GRT/USD", 5, 8, "0.15000", "5000", 0.3),
    ("SAND/USD", 5, 8, "0.28000", "3000", 0.2),
    ("MANA/USD", 5, 8, "0.30000", "3000", 0.2),
    ("AUCTION/EUR", 2, 8, "17.00", "30", 0.1),
    ("EURQ/USD", 5, 2, "1.08500", "5000", 0.1),
    ("LUNC/USD", 8, 2, "0.00009000", "1000000", 0.2),
    ("ZRX/USD", 5, 8, "0.33000", "2000", 0.1),
    ("BTC/CAD", 1, 8, "86000.0", "0.1", 0.5),
    ("BTC/AUD", 1, 8, "95000.0", "0.1", 0.4),
    ("BTC/CHF", 1, 8, "54000.0", "0.1", 0.3),
)


def catalogue(count: int | None = None) -> list[PairSpec]:
    """The first ``count`` pairs (all by default); beyond the catalogue, synthetic ``SIMnnn/USD`` pairs."""
    specs = [PairSpec(*row) for row in _CATALOGUE]
    n = len(specs) if count is None else count
    precisions = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    for i in range(len(specs), n):
        pp = precisions[i % len(precisions)]
        price = "1" + "0" * max(0, 4 - pp) + ("." + "0" * pp if pp else "")
        specs.append(PairSpec(f"SIM{i:03d}/USD", pp, 8, price, "10", 0.2))
    return specs[:n]
