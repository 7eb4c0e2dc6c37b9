import pytest

from models.book import L2Book
from models.checksum import checksum, checksum_text
from models.kraken.frames import BookFrame, parse_frame
from tests.conftest import CAPTURES

pytestmark = pytest.mark.unit


def test_docs_matic_snapshot_vector() -> None:
    """Kraken's documented MATIC/USD snapshot hashes to 2439117997 when written at 4 / 8 decimals."""
    line = next(ln for ln in (CAPTURES / "kraken-docs_examples.jsonl").read_text().splitlines()
                if ln.startswith('{"channel":"book","type":"snapshot"') and "MATIC/USD" in ln)
    frame = parse_frame(line)
    assert isinstance(frame, BookFrame)
    book = L2Book("MATIC/USD", 10, (4, 8))
    book.apply_snapshot(frame.books[0].bids, frame.books[0].asks)
    asks, bids = book.levels("asks"), book.levels("bids")
    assert checksum(asks, bids) == book.checksum() == frame.books[0].checksum == 2439117997
    assert checksum_text(asks, bids) == book.checksum_text()
    assert checksum_text([("0.5667", "2.00000000")], []) == "5667200000000"
