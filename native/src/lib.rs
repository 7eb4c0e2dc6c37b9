//! krakenflow's native book core: the Kraken v2 L2 book and the book frame parser, in Rust.
//!
//! The pure-Python engine (`models/book.py`, `models/kraken/frames.py`) is the reference: this module
//! does the same thing, for books whose instrument precision is known, and the tests prove the two
//! identical on every real capture, the simulator's depth-1000 recording and the property tests.
//!
//! * `Book`: levels keyed by integer ticks (negated for bids, so both sides iterate best first) in a
//!   `BTreeMap`; each level keeps its `(price, qty)` text tuple (the very object deltas and level lists
//!   hand out) and its checksum fragment; the top-10 checksum text is cached per side and rebuilt only
//!   when a change reaches it. Updates truncate to the depth after every level, as Kraken's rule says
//!   (see `Book::apply`).
//! * `parse_book`: one book frame in Kraken's own layout, numbers as their exact wire tokens; `None`
//!   for anything else, which the Python parser then decides (so errors are always Python's).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};
use std::collections::BTreeMap;

const CHECKSUM_LEVELS: usize = 10;
/// Longest number token the fast parser accepts (models.kraken.frames.MAX_NUMBER_CHARS).
const MAX_NUMBER_CHARS: usize = 32;

fn number_error(py: Python<'_>, message: String) -> PyErr {
    // models.numbers.NumberError, so that callers catch the same exception from either engine
    match py
        .import_bound("models.numbers")
        .and_then(|m| m.getattr("NumberError"))
        .and_then(|cls| cls.call1((message.clone(),)))
    {
        Ok(err) => PyErr::from_value_bound(err),
        Err(_) => PyValueError::new_err(message),
    }
}

fn repr(token: &Bound<'_, PyString>) -> String {
    token.repr().map(|r| r.to_string()).unwrap_or_default()
}

/// `models.numbers.scale`: (ticks, text) of a token written with `precision` decimals.
fn scale<'py>(py: Python<'py>, token: &Bound<'py, PyString>, precision: usize) -> PyResult<(u128, Bound<'py, PyString>)> {
    let s = token.to_str()?;
    let b = s.as_bytes();
    let n = b.len();
    // the wire form: exactly `precision` decimals, digits around the dot
    if precision > 0 && n > precision + 1 && b[n - precision - 1] == b'.' {
        let mut ticks: u128 = 0;
        let mut ok = true;
        for (i, &c) in b.iter().enumerate() {
            if i == n - precision - 1 {
                continue;
            }
            if !c.is_ascii_digit() {
                ok = false;
                break;
            }
            match ticks.checked_mul(10).and_then(|t| t.checked_add((c - b'0') as u128)) {
                Some(t) => ticks = t,
                None => return Err(number_error(py, format!("not a plausible price or quantity: {}", repr(token)))),
            }
        }
        if ok {
            return Ok((ticks, token.clone()));
        }
    }
    let plain: String = if s.contains('e') || s.contains('E') {
        py.import_bound("models.numbers")?.getattr("plain_text")?.call1((token,))?.extract()?
    } else {
        s.to_owned()
    };
    let (whole, frac) = match plain.find('.') {
        Some(i) => (&plain[..i], &plain[i + 1..]),
        None => (plain.as_str(), ""),
    };
    if whole.is_empty() || !whole.bytes().all(|c| c.is_ascii_digit()) || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return Err(number_error(py, format!("not a non-negative decimal: {}", repr(token))));
    }
    let mut frac = frac.to_owned();
    if frac.len() < precision {
        frac.push_str(&"0".repeat(precision - frac.len()));
    } else if frac.len() > precision {
        if frac[precision..].bytes().any(|c| c != b'0') {
            return Err(number_error(
                py,
                format!(
                    "{} has more than {} decimals; the instrument precision is stale (refresh it from the instrument channel)",
                    repr(token),
                    precision
                ),
            ));
        }
        frac.truncate(precision);
    }
    let digits = format!("{whole}{frac}");
    let ticks: u128 = digits
        .parse()
        .map_err(|_| number_error(py, format!("not a plausible price or quantity: {}", repr(token))))?;
    let text = if precision > 0 { format!("{whole}.{frac}") } else { whole.to_owned() };
    Ok((ticks, PyString::new_bound(py, &text)))
}

struct Level {
    pair: Py<PyTuple>,
    price: Py<PyString>,
    frag: String,
}

struct Side {
    levels: BTreeMap<i128, Level>,
    is_ask: bool,
    top: Option<Vec<u8>>,
    edge: Option<i128>,
    best: Option<i128>,
}

impl Side {
    fn new(is_ask: bool) -> Self {
        Side { levels: BTreeMap::new(), is_ask, top: None, edge: None, best: None }
    }

    fn key(&self, ticks: u128) -> i128 {
        if self.is_ask {
            ticks as i128
        } else {
            -(ticks as i128)
        }
    }

    fn clear(&mut self) {
        self.levels.clear();
        self.top = None;
    }

    fn top(&mut self) -> &[u8] {
        if self.top.is_none() {
            let mut top = Vec::with_capacity(256);
            self.edge = None;
            self.best = None;
            for (i, (key, level)) in self.levels.iter().take(CHECKSUM_LEVELS).enumerate() {
                if i == 0 {
                    self.best = Some(*key);
                }
                if i == CHECKSUM_LEVELS - 1 {
                    self.edge = Some(*key);
                }
                top.extend_from_slice(level.frag.as_bytes());
            }
            self.top = Some(top);
        }
        self.top.as_deref().unwrap_or(&[])
    }

    fn pairs<'py>(&self, py: Python<'py>, depth: Option<usize>) -> Bound<'py, PyList> {
        let take = depth.unwrap_or(usize::MAX);
        PyList::new_bound(py, self.levels.values().take(take).map(|l| l.pair.clone_ref(py)))
    }
}

/// A Kraken v2 delta: the message's levels, each insert that pushed a level out followed by a
/// zero-quantity delete of that level.
#[pyclass(frozen, get_all, module = "krakenflow_native")]
struct Delta {
    symbol: Py<PyString>,
    is_snapshot: bool,
    bids: Py<PyList>,
    asks: Py<PyList>,
    checksum: u32,
    expected_checksum: Option<i64>,
    crossed: bool,
}

#[pymethods]
impl Delta {
    /// `None` when the message carried no checksum.
    #[getter]
    fn checksum_ok(&self) -> Option<bool> {
        self.expected_checksum.map(|e| e == self.checksum as i64)
    }

    /// Equal to any delta (native or ``models.book.BookDelta``) with the same fields.
    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        let mine = PyTuple::new_bound(
            py,
            [
                self.symbol.clone_ref(py).into_py(py),
                self.is_snapshot.into_py(py),
                self.bids.clone_ref(py).into_py(py),
                self.asks.clone_ref(py).into_py(py),
                self.checksum.into_py(py),
                self.expected_checksum.into_py(py),
                self.crossed.into_py(py),
            ],
        );
        let mut theirs = Vec::with_capacity(7);
        for name in ["symbol", "is_snapshot", "bids", "asks", "checksum", "expected_checksum", "crossed"] {
            match other.getattr(name) {
                Ok(value) => theirs.push(value.unbind()),
                Err(_) => return Ok(false),
            }
        }
        mine.eq(PyTuple::new_bound(py, theirs))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Delta(symbol={}, is_snapshot={}, bids={}, asks={}, checksum={}, expected_checksum={:?}, crossed={})",
            self.symbol.bind(py),
            self.is_snapshot,
            self.bids.bind(py),
            self.asks.bind(py),
            self.checksum,
            self.expected_checksum,
            self.crossed
        )
    }
}

/// One pair's book at one subscribed depth, with a known instrument precision.
#[pyclass(module = "krakenflow_native")]
struct Book {
    symbol: Py<PyString>,
    #[pyo3(get)]
    depth: usize,
    price_precision: usize,
    qty_precision: usize,
    zero_qty: Py<PyString>,
    bids: Side,
    asks: Side,
}

fn zero(py: Python<'_>, qty_precision: usize) -> Py<PyString> {
    let text = if qty_precision == 0 { "0".to_owned() } else { format!("0.{}", "0".repeat(qty_precision)) };
    PyString::new_bound(py, &text).unbind()
}

impl Book {
    fn side(&mut self, is_ask: bool) -> &mut Side {
        if is_ask {
            &mut self.asks
        } else {
            &mut self.bids
        }
    }

    fn level<'py>(
        &self,
        py: Python<'py>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<(u128, u128, Bound<'py, PyString>, Bound<'py, PyTuple>)> {
        let (price, qty): (Bound<'py, PyString>, Bound<'py, PyString>) = item.extract()?;
        let (pt, ptext) = scale(py, &price, self.price_precision)?;
        let (qt, qtext) = scale(py, &qty, self.qty_precision)?;
        let pair = PyTuple::new_bound(py, [ptext.clone(), qtext]);
        Ok((pt, qt, ptext, pair))
    }

    fn replace<'py>(&mut self, py: Python<'py>, is_ask: bool, tokens: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        self.side(is_ask).clear();
        for item in tokens.iter()? {
            let (pt, qt, ptext, pair) = self.level(py, &item?)?;
            let side = self.side(is_ask);
            let key = side.key(pt);
            if qt != 0 {
                side.levels.insert(key, Level { pair: pair.unbind(), price: ptext.unbind(), frag: format!("{pt}{qt}") });
            } else {
                side.levels.remove(&key);
            }
        }
        let depth = self.depth;
        let side = self.side(is_ask);
        while side.levels.len() > depth {
            side.levels.pop_last();
        }
        Ok(side.pairs(py, None))
    }

    /// Applies an update's levels in order, truncating after each one (Kraken's rule: it publishes the
    /// changes inside the subscriber's top N at each instant, and no delete for a level pushed out, so
    /// truncating once per message would keep a pushed-out level cancelled later in the message).
    fn apply<'py>(&mut self, py: Python<'py>, is_ask: bool, tokens: &Bound<'py, PyAny>, out: &Bound<'py, PyList>) -> PyResult<()> {
        let mut top_changed = false;
        let depth = self.depth;
        let zero = self.zero_qty.clone_ref(py);
        // a level truncated away is beyond the cached edge unless the depth is under 10, and then
        // there is no edge (every change clears the cache)
        let edge = self.side(is_ask).edge;
        for item in tokens.iter()? {
            let (pt, qt, ptext, pair) = self.level(py, &item?)?;
            out.append(&pair)?;
            let side = self.side(is_ask);
            let key = side.key(pt);
            if qt != 0 {
                let level = Level { pair: pair.unbind(), price: ptext.unbind(), frag: format!("{pt}{qt}") };
                // only an insert can overflow, by one (the book is within the depth before it); the
                // delete goes right after it, as a later level of the message may set that price again
                if side.levels.insert(key, level).is_none() && side.levels.len() > depth {
                    if let Some((_, worst)) = side.levels.pop_last() {
                        out.append(PyTuple::new_bound(py, [worst.price, zero.clone_ref(py)]))?;
                    }
                }
            } else if side.levels.remove(&key).is_none() {
                continue;
            }
            if edge.map_or(true, |e| key <= e) {
                top_changed = true;
            }
        }
        if top_changed {
            self.side(is_ask).top = None;
        }
        Ok(())
    }

    fn crc(&mut self) -> u32 {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(self.asks.top());
        hasher.update(self.bids.top());
        hasher.finalize()
    }

    fn is_crossed(&mut self) -> bool {
        self.asks.top();
        self.bids.top();
        match (self.bids.best, self.asks.best) {
            (Some(bid), Some(ask)) => -bid >= ask,
            _ => false,
        }
    }

    fn texts(&self, py: Python<'_>, side: &Side) -> PyResult<Vec<(Py<PyString>, Py<PyString>)>> {
        side.levels.values().map(|l| l.pair.bind(py).extract()).collect()
    }
}

#[pymethods]
impl Book {
    #[new]
    fn new(py: Python<'_>, symbol: Bound<'_, PyString>, depth: usize, precision: (usize, usize)) -> PyResult<Self> {
        if depth < 1 {
            return Err(PyValueError::new_err(format!("depth must be positive, got {depth}")));
        }
        Ok(Book {
            symbol: symbol.unbind(),
            depth,
            price_precision: precision.0,
            qty_precision: precision.1,
            zero_qty: zero(py, precision.1),
            bids: Side::new(false),
            asks: Side::new(true),
        })
    }

    #[getter]
    fn symbol(&self, py: Python<'_>) -> Py<PyString> {
        self.symbol.clone_ref(py)
    }

    #[getter]
    fn precision(&self) -> (usize, usize) {
        (self.price_precision, self.qty_precision)
    }

    #[getter]
    fn zero_qty(&self, py: Python<'_>) -> Py<PyString> {
        self.zero_qty.clone_ref(py)
    }

    #[pyo3(signature = (bids, asks, checksum=None))]
    fn apply_snapshot(&mut self, py: Python<'_>, bids: &Bound<'_, PyAny>, asks: &Bound<'_, PyAny>, checksum: Option<i64>) -> PyResult<Delta> {
        let bid_levels = self.replace(py, false, bids)?;
        let ask_levels = self.replace(py, true, asks)?;
        Ok(Delta {
            symbol: self.symbol.clone_ref(py),
            is_snapshot: true,
            bids: bid_levels.unbind(),
            asks: ask_levels.unbind(),
            checksum: self.crc(),
            expected_checksum: checksum,
            crossed: self.is_crossed(),
        })
    }

    #[pyo3(signature = (bids, asks, checksum=None))]
    fn apply_update(&mut self, py: Python<'_>, bids: &Bound<'_, PyAny>, asks: &Bound<'_, PyAny>, checksum: Option<i64>) -> PyResult<Delta> {
        let bid_delta = PyList::empty_bound(py);
        let ask_delta = PyList::empty_bound(py);
        if bids.is_truthy()? {
            self.apply(py, false, bids, &bid_delta)?;
        }
        if asks.is_truthy()? {
            self.apply(py, true, asks, &ask_delta)?;
        }
        Ok(Delta {
            symbol: self.symbol.clone_ref(py),
            is_snapshot: false,
            bids: bid_delta.unbind(),
            asks: ask_delta.unbind(),
            checksum: self.crc(),
            expected_checksum: checksum,
            crossed: self.is_crossed(),
        })
    }

    /// The string Kraken hashes: top 10 asks ascending, then top 10 bids descending.
    fn checksum_text(&mut self) -> String {
        let mut text = String::from_utf8_lossy(self.asks.top()).into_owned();
        text.push_str(&String::from_utf8_lossy(self.bids.top()));
        text
    }

    fn checksum(&mut self) -> u32 {
        self.crc()
    }

    fn crossed(&mut self) -> bool {
        self.is_crossed()
    }

    #[pyo3(signature = (side, depth=None))]
    fn levels<'py>(&self, py: Python<'py>, side: &str, depth: Option<usize>) -> Bound<'py, PyList> {
        if side == "bids" {
            self.bids.pairs(py, depth)
        } else {
            self.asks.pairs(py, depth)
        }
    }

    /// Levels held on one side.
    fn count(&self, side: &str) -> usize {
        if side == "bids" {
            self.bids.levels.len()
        } else {
            self.asks.levels.len()
        }
    }

    fn best(&self, py: Python<'_>) -> (Option<Py<PyTuple>>, Option<Py<PyTuple>>) {
        (
            self.bids.levels.values().next().map(|l| l.pair.clone_ref(py)),
            self.asks.levels.values().next().map(|l| l.pair.clone_ref(py)),
        )
    }

    fn __len__(&self) -> usize {
        self.bids.levels.len() + self.asks.levels.len()
    }

    /// Re-key for a new precision, every level's value kept; on failure the book is unchanged.
    fn set_precision(&mut self, py: Python<'_>, precision: (usize, usize)) -> PyResult<()> {
        if precision == (self.price_precision, self.qty_precision) {
            return Ok(());
        }
        let bids = PyList::new_bound(py, self.texts(py, &self.bids)?);
        let asks = PyList::new_bound(py, self.texts(py, &self.asks)?);
        let old = (self.price_precision, self.qty_precision);
        self.use_precision(py, precision);
        if let Err(err) = self.apply_snapshot(py, bids.as_any(), asks.as_any(), None) {
            self.use_precision(py, old);
            self.apply_snapshot(py, bids.as_any(), asks.as_any(), None)?;
            return Err(err);
        }
        Ok(())
    }
}

impl Book {
    fn use_precision(&mut self, py: Python<'_>, precision: (usize, usize)) {
        self.price_precision = precision.0;
        self.qty_precision = precision.1;
        self.zero_qty = zero(py, precision.1);
    }
}

// -- the book frame parser ---------------------------------------------------------------------------

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn lit(&mut self, s: &[u8]) -> Option<()> {
        if self.b[self.i..].starts_with(s) {
            self.i += s.len();
            Some(())
        } else {
            None
        }
    }

    /// A JSON string without escapes (anything else: not the fast layout).
    fn string(&mut self) -> Option<&'a str> {
        self.lit(b"\"")?;
        let start = self.i;
        while self.i < self.b.len() {
            match self.b[self.i] {
                b'"' => {
                    let s = std::str::from_utf8(&self.b[start..self.i]).ok()?;
                    self.i += 1;
                    return Some(s);
                }
                b'\\' => return None,
                c if c < 0x20 => return None,
                _ => self.i += 1,
            }
        }
        None
    }

    /// A non-negative JSON number in plain notation (``0``, ``12``, ``0.5``), as its text.
    fn number(&mut self) -> Option<&'a str> {
        let start = self.i;
        let b = self.b;
        let digits = |i: &mut usize| {
            let s = *i;
            while *i < b.len() && b[*i].is_ascii_digit() {
                *i += 1;
            }
            *i - s
        };
        let mut i = self.i;
        let whole = digits(&mut i);
        if whole == 0 || (whole > 1 && b[start] == b'0') {
            return None;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            if digits(&mut i) == 0 {
                return None;
            }
        }
        if i < b.len() && matches!(b[i], b'e' | b'E') {
            return None;
        }
        if i - start > MAX_NUMBER_CHARS {
            return None;
        }
        self.i = i;
        std::str::from_utf8(&b[start..i]).ok()
    }

    fn levels<'py>(&mut self, py: Python<'py>) -> Option<Bound<'py, PyList>> {
        let out = PyList::empty_bound(py);
        self.lit(b"[")?;
        if self.lit(b"]").is_some() {
            return Some(out);
        }
        loop {
            self.lit(b"{\"price\":")?;
            let price = self.number()?;
            self.lit(b",\"qty\":")?;
            let qty = self.number()?;
            self.lit(b"}")?;
            out.append(PyTuple::new_bound(py, [PyString::new_bound(py, price), PyString::new_bound(py, qty)])).ok()?;
            if self.lit(b",").is_none() {
                break;
            }
        }
        self.lit(b"]")?;
        Some(out)
    }
}

/// ``(is_snapshot, symbol, bids, asks, checksum, timestamp)`` of a single-pair book frame in Kraken's
/// own layout (``symbol``, ``bids``, ``asks``, ``checksum``, then ``timestamp`` if any), or ``None``.
#[pyfunction]
fn parse_book<'py>(py: Python<'py>, raw: &[u8]) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let mut s = Scanner { b: raw, i: 0 };
    let parsed = (|| {
        s.lit(b"{\"channel\":\"book\",\"type\":\"")?;
        let is_snapshot = if s.lit(b"snapshot\"").is_some() {
            true
        } else {
            s.lit(b"update\"")?;
            false
        };
        s.lit(b",\"data\":[{\"symbol\":")?;
        let symbol = s.string()?;
        s.lit(b",\"bids\":")?;
        let bids = s.levels(py)?;
        s.lit(b",\"asks\":")?;
        let asks = s.levels(py)?;
        s.lit(b",\"checksum\":")?;
        let start = s.i;
        while s.i < s.b.len() && s.b[s.i].is_ascii_digit() {
            s.i += 1;
        }
        let digits = std::str::from_utf8(&s.b[start..s.i]).ok()?;
        if digits.is_empty() || digits.len() > 18 || (digits.len() > 1 && digits.starts_with('0')) {
            return None;
        }
        let checksum: i64 = digits.parse().ok()?;
        let timestamp = if s.lit(b",\"timestamp\":").is_some() { Some(s.string()?) } else { None };
        s.lit(b"}]}")?;
        if s.i != s.b.len() {
            return None;
        }
        Some((is_snapshot, symbol, bids, asks, checksum, timestamp))
    })();
    Ok(parsed.map(|(is_snapshot, symbol, bids, asks, checksum, timestamp)| {
        PyTuple::new_bound(
            py,
            [
                is_snapshot.into_py(py),
                symbol.into_py(py),
                bids.into_py(py),
                asks.into_py(py),
                checksum.into_py(py),
                timestamp.into_py(py),
            ],
        )
    }))
}

#[pymodule]
fn krakenflow_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Book>()?;
    m.add_class::<Delta>()?;
    m.add_function(wrap_pyfunction!(parse_book, m)?)?;
    Ok(())
}
