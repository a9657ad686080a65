"""Labelled transaction files in and out: the Sparkov CSV, our native CSV, their digests.

Readers return `Txn` rows and refuse a malformed file with one error:

    DataError(ValueError)   bad_data   names the file and, where known, the line and column

A missing file stays an `OSError`. Files are gzip-compressed or plain, told apart by their
first bytes (reading) or by a `.gz` suffix (writing).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import math
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

import msgspec

from model.records import Txn

FORMATS = ("native", "sparkov")
GZIP_MAGIC = b"\x1f\x8b"

Convert = Callable[[str], Any]
Builder = Callable[[list[str]], Txn]


class DataError(ValueError):
    code = "bad_data"

    def __init__(self, path: str | Path, reason: str, *, line: int | None = None,
                 column: str | None = None) -> None:
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {reason}")
        self.path = str(path)
        self.line = line
        self.column = column
        self.reason = reason


# --- cell converters: each raises ValueError with a short reason ---------------------------

def _text(cell: str) -> str:
    if not cell:
        raise ValueError("empty")
    return cell


def _int(cell: str) -> int:
    try:
        return int(cell)
    except ValueError:
        raise ValueError(f"not an integer: {cell!r}") from None


def _positive_int(cell: str) -> int:
    value = _int(cell)
    if value <= 0:
        raise ValueError(f"must be positive: {cell!r}")
    return value


def _float(cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise ValueError(f"not a number: {cell!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {cell!r}")
    return value


def _bounded(limit: float) -> Convert:
    def convert(cell: str) -> float:
        value = _float(cell)
        if not -limit <= value <= limit:
            raise ValueError(f"out of range ±{limit:g}: {cell!r}")
        return value
    return convert


_lat, _lon = _bounded(90.0), _bounded(180.0)


def _flag(cell: str) -> bool:
    # Strict on purpose: a label such as "yes" or "true" must not silently read as legitimate.
    if cell == "1":
        return True
    if cell == "0":
        return False
    raise ValueError(f"not 0 or 1: {cell!r}")


def _amount_cents(cell: str) -> int:
    """A decimal amount in major units -> cents, exactly (Decimal, not float)."""
    try:
        amount = Decimal(cell)
    except (InvalidOperation, ValueError):
        raise ValueError(f"not a decimal amount: {cell!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not a decimal amount: {cell!r}")
    cents = int((amount * 100).to_integral_value(ROUND_HALF_EVEN))  # the same as round()
    if cents <= 0:
        raise ValueError(f"amount must be positive: {cell!r}")
    return cents


def _optional(convert: Convert) -> Convert:
    def optional(cell: str) -> Any:
        return None if cell == "" else convert(cell)
    return optional


# --- reading -------------------------------------------------------------------------------

@contextmanager
def _open_text(path: str | Path) -> Iterator[TextIO]:
    with open(path, "rb") as raw:
        compressed = raw.read(2) == GZIP_MAGIC
    # utf-8-sig: a byte-order mark (spreadsheet exports) must not end up in the first header.
    stream: TextIO = (gzip.open(path, "rt", encoding="utf-8-sig", newline="") if compressed
                      else open(path, encoding="utf-8-sig", newline=""))
    with stream:
        yield stream


def _read_rows(path: str | Path, columns: Sequence[tuple[str, Convert, bool]],
               make_builder: Callable[[list[int]], Builder]) -> list[Txn]:
    """The rows of a CSV with a header. `columns` are (name, converter, required); the
    builder gets their cell indexes (-1 for an absent optional column) and turns a row's
    cells into a Txn, raising ValueError or IndexError for a bad row."""
    with _open_text(path) as stream:
        reader = csv.reader(stream)
        try:
            header = next(reader, None)
            if header is None:
                raise DataError(path, "empty file, no header row", line=1)
            plan = _plan(path, header, columns)
            build = make_builder([i for _, i, _ in plan])
            rows = []
            for cells in reader:
                if not cells:  # a blank line (often the last one): csv gives it as []
                    continue
                try:
                    rows.append(build(cells))
                except (ValueError, IndexError):
                    raise _diagnose(path, reader.line_num, cells, plan) from None
            return rows
        except (csv.Error, UnicodeDecodeError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise DataError(path, f"unreadable ({exc})", line=reader.line_num + 1) from exc


def _plan(path: str | Path, header: list[str], columns: Sequence[tuple[str, Convert, bool]],
          ) -> list[tuple[str, int, Convert]]:
    index = {name: i for i, name in enumerate(header)}
    plan: list[tuple[str, int, Convert]] = []
    for name, convert, required in columns:
        if name in index:
            plan.append((name, index[name], convert))
        elif required:
            raise DataError(path, "missing from the header row", line=1, column=name)
        else:
            plan.append((name, -1, lambda cell: None))
    return plan


def _diagnose(path: str | Path, line: int, cells: list[str],
              plan: list[tuple[str, int, Convert]]) -> DataError:
    """The error for a row the fast path refused: its first offending column."""
    for name, i, convert in plan:
        if i >= len(cells):
            return DataError(path, f"missing (the row has {len(cells)} cells)", line=line,
                             column=name)
        try:
            convert(cells[i])
        except ValueError as exc:
            return DataError(path, str(exc), line=line, column=name)
    return DataError(path, "malformed row", line=line)


def _sort(rows: list[Txn]) -> list[Txn]:
    rows.sort(key=lambda r: (r.event_ms, r.transaction_id))
    return rows


_SPARKOV = (("trans_num", _text), ("unix_time", _int), ("acct_num", _text), ("cc_num", _text),
            ("merchant", _text), ("category", _text), ("amt", _amount_cents),
            ("merch_lat", _lat), ("merch_long", _lon), ("lat", _lat), ("long", _lon),
            ("is_fraud", _flag))


def _sparkov_builder(indexes: list[int]) -> Builder:
    i_tid, i_time, i_acct, i_card, i_merch, i_cat, i_amt, i_mlat, i_mlon, i_lat, i_lon, \
        i_fraud = indexes

    # Inline rather than one converter call per cell: this runs 345k times for a year of
    # Sparkov and halves the load time. The checks are those of the converters in _SPARKOV,
    # which _diagnose runs to name the column when this refuses a row.
    def build(cells: list[str]) -> Txn:
        lat, lon = float(cells[i_mlat]), float(cells[i_mlon])
        home_lat, home_lon = float(cells[i_lat]), float(cells[i_lon])
        fraud = cells[i_fraud]
        txn = Txn(transaction_id=cells[i_tid], event_ms=int(cells[i_time]) * 1000,
                  utc_offset_min=0, account_id=cells[i_acct], card_id=cells[i_card],
                  merchant_id=cells[i_merch], merchant_category=cells[i_cat],
                  amount_minor=_amount_cents(cells[i_amt]), currency="USD", exponent=2,
                  country="US", lat=lat, lon=lon, home_country="US", home_lat=home_lat,
                  home_lon=home_lon, account_created_ms=None, is_fraud=fraud == "1")
        if not (txn.transaction_id and txn.account_id and txn.card_id and txn.merchant_id
                and txn.merchant_category and fraud in ("0", "1")
                and -90.0 <= lat <= 90.0 and -90.0 <= home_lat <= 90.0
                and -180.0 <= lon <= 180.0 and -180.0 <= home_lon <= 180.0):
            raise ValueError("invalid cell")  # NaN fails the range checks too
        return txn

    return build


def read_sparkov(path: str | Path) -> list[Txn]:
    """A Sparkov generator CSV (US, USD, UTC), sorted by (event_ms, transaction_id)."""
    columns = [(name, convert, True) for name, convert in _SPARKOV]
    return _sort(_read_rows(path, columns, _sparkov_builder))


def _native_converter(name: str, kind: Any, required: bool) -> Convert:
    special: dict[str, Convert] = {"amount_minor": _positive_int, "lat": _lat, "lon": _lon,
                                   "home_lat": _lat, "home_lon": _lon}
    base: Convert = special.get(name) or {str: _text, int: _int, float: _float,
                                          bool: _flag}[_base_type(kind)]
    return base if required else _optional(base)


def _base_type(kind: Any) -> type:
    # `float | None` and friends: the one non-None member.
    members = [m for m in getattr(kind, "__args__", (kind,)) if m is not type(None)]
    if len(members) != 1 or members[0] not in (str, int, float, bool):
        raise TypeError(f"the native format cannot store a field of type {kind!r}")
    base: type = members[0]
    return base


# Derived from the struct, so a field added to Txn is read and written without a change here.
# A field with a default (utc_offset_min, exponent) may be empty and then takes that default.
_FIELDS = msgspec.structs.fields(Txn)
NATIVE_COLUMNS = tuple(f.name for f in _FIELDS)
_NATIVE = [(f.name, _native_converter(f.name, f.type, f.required), f.required)
           for f in _FIELDS]
_DEFAULTS = [None if f.required else f.default for f in _FIELDS]


def _native_builder(indexes: list[int]) -> Builder:
    plan = [(name, i, convert, default) for (name, convert, _), i, default
            in zip(_NATIVE, indexes, _DEFAULTS, strict=True) if i >= 0]

    def build(cells: list[str]) -> Txn:
        fields: dict[str, Any] = {}
        for name, i, convert, default in plan:
            value = convert(cells[i])
            fields[name] = default if value is None else value
        return Txn(**fields)

    return build


def read_native(path: str | Path) -> list[Txn]:
    """A file written by `write_native`, rows in file order. Columns of fields with a default
    may be absent (a file from before the field existed); unknown columns are ignored."""
    return _read_rows(path, _NATIVE, _native_builder)


def load(path: str | Path, fmt: str) -> list[Txn]:
    """Read `path` in format `fmt` ("native" or "sparkov")."""
    if fmt == "native":
        return read_native(path)
    if fmt == "sparkov":
        return read_sparkov(path)
    raise DataError(path, f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")


# --- writing -------------------------------------------------------------------------------

def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same float
    return value


def write_native(rows: Iterable[Txn], path: str | Path) -> None:
    """Write `rows` in the native CSV (gzip when `path` ends in .gz).

    The file appears complete or not at all (written beside, then renamed), so a reader never
    trains on half of it. An empty string cannot be told from None in a CSV cell, so empty
    text fields are refused.
    """
    partial = Path(f"{path}.partial")
    try:
        _write_csv(rows, partial, compress=str(path).endswith(".gz"))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _write_csv(rows: Iterable[Txn], path: Path, *, compress: bool) -> None:
    # Level 6, not gzip's default 9: a third of the time for a file a few percent larger.
    stream: TextIO = (gzip.open(path, "wt", compresslevel=6, encoding="utf-8", newline="")
                      if compress else open(path, "w", encoding="utf-8", newline=""))
    with stream:
        # The default \r\n line end (RFC 4180) also makes csv quote a lone \r in a field.
        writer = csv.writer(stream)
        writer.writerow(NATIVE_COLUMNS)
        for row in rows:
            values = msgspec.structs.astuple(row)
            if "" in values:
                raise ValueError(f"transaction {row.transaction_id!r}: empty text field")
            writer.writerow([_cell(v) for v in values])


def data_sha256(path: str | Path) -> str:
    """The hex SHA-256 of the file's bytes, for the model manifest."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def split_by_time(rows: Sequence[Txn], cutoff_ms: int) -> tuple[list[Txn], list[Txn]]:
    """(rows before `cutoff_ms`, rows at or after it), each in the input order."""
    before = [r for r in rows if r.event_ms < cutoff_ms]
    after = [r for r in rows if r.event_ms >= cutoff_ms]
    return before, after
