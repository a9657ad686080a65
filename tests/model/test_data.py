"""Labelled files: the Sparkov reader's mapping and errors, the native format's round trip."""

from __future__ import annotations

import csv
import gzip
import hashlib
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.data import (
    NATIVE_COLUMNS,
    DataError,
    data_sha256,
    load,
    read_native,
    read_sparkov,
    split_by_time,
    write_native,
)
from model.records import Txn

SPARKOV_COLUMNS = ("trans_num,unix_time,cc_num,acct_num,category,amt,merchant,merch_lat,"
                   "merch_long,gender,city,state,zip,lat,long,city_pop,job,dob,is_fraud").split(",")


def sparkov_row(**overrides: str) -> dict[str, str]:
    row = {
        "trans_num": "75e71a5a924bf0d37cb9184f26252fd5", "unix_time": "1735689718",
        "cc_num": "4303975245086409", "acct_num": "214549341145", "category": "gas_transport",
        "amt": "24.33", "merchant": "fraud_Reilly, Heaney and Cole", "merch_lat": "37.946494",
        "merch_long": "-121.396945", "gender": "F", "city": "Folsom", "state": "CA",
        "zip": "95630", "lat": "38.6709", "long": "-121.1529", "city_pop": "72180",
        "job": "Psychotherapist, child", "dob": "1993-09-28", "is_fraud": "0"}
    row.update(overrides)
    return row


def write_sparkov(path: Path, rows: list[dict[str, str]],
                  columns: list[str] = SPARKOV_COLUMNS) -> Path:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(columns)
        writer.writerows([row.get(c, "") for c in columns] for row in rows)
    return path


@pytest.mark.parametrize("name", ["sparkov.csv", "sparkov.csv.gz", "no-suffix"])
def test_sparkov_fields_map_onto_txn(tmp_path: Path, name: str) -> None:
    path = write_sparkov(tmp_path / name, [sparkov_row()])
    if name == "no-suffix":  # compressed or not is told by the bytes, not the name
        path.write_bytes(gzip.compress(path.read_bytes()))

    assert read_sparkov(path) == [Txn(
        transaction_id="75e71a5a924bf0d37cb9184f26252fd5", event_ms=1_735_689_718_000,
        utc_offset_min=0, account_id="214549341145", card_id="4303975245086409",
        merchant_id="fraud_Reilly, Heaney and Cole", merchant_category="gas_transport",
        amount_minor=2433, currency="USD", exponent=2, country="US", lat=37.946494,
        lon=-121.396945, home_country="US", home_lat=38.6709, home_lon=-121.1529,
        account_created_ms=None, is_fraud=False, pattern=None)]


@pytest.mark.parametrize(("amt", "minor"), [
    ("0.29", 29), ("1234.5", 123450), ("4.35", 435), ("0.01", 1), ("1.1", 110),
    ("19.99", 1999), ("7", 700), ("28948.14", 2894814), ("1e2", 10000)])
def test_sparkov_amounts_are_exact_cents(tmp_path: Path, amt: str, minor: int) -> None:
    path = write_sparkov(tmp_path / "a.csv", [sparkov_row(amt=amt)])
    assert read_sparkov(path)[0].amount_minor == minor


def test_sparkov_rows_sorted_by_time_then_id_and_labels_read(tmp_path: Path) -> None:
    rows = [sparkov_row(trans_num="c", unix_time="200", is_fraud="1"),
            sparkov_row(trans_num="b", unix_time="100"),
            sparkov_row(trans_num="a", unix_time="200")]
    path = write_sparkov(tmp_path / "s.csv.gz", rows)

    txns = read_sparkov(path)

    assert [(t.transaction_id, t.event_ms, t.is_fraud) for t in txns] == [
        ("b", 100_000, False), ("a", 200_000, False), ("c", 200_000, True)]
    assert load(path, "sparkov") == txns


def test_sparkov_ignores_blank_lines_and_a_byte_order_mark(tmp_path: Path) -> None:
    path = write_sparkov(tmp_path / "s.csv", [sparkov_row()])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes() + b"\r\n\r\n")
    assert len(read_sparkov(path)) == 1


@pytest.mark.parametrize(("column", "value", "reason"), [
    ("amt", "abc", "not a decimal amount"),
    ("amt", "0.00", "must be positive"),
    ("amt", "-3.10", "must be positive"),
    ("amt", "NaN", "not a decimal amount"),
    ("unix_time", "1735689718.5", "not an integer"),
    ("merch_lat", "north", "not a number"),
    ("merch_lat", "91.0", "out of range"),
    ("long", "inf", "not a finite number"),
    ("is_fraud", "yes", "not 0 or 1"),
    ("trans_num", "", "empty"),
])
def test_sparkov_bad_cell_names_file_line_and_column(tmp_path: Path, column: str, value: str,
                                                     reason: str) -> None:
    rows = [sparkov_row(trans_num="ok1"), sparkov_row(trans_num="ok2"),
            sparkov_row(**{"trans_num": "bad", column: value})]
    path = write_sparkov(tmp_path / "bad.csv", rows)

    with pytest.raises(DataError) as caught:
        read_sparkov(path)

    error = caught.value
    assert (error.path, error.line, error.column) == (str(path), 4, column)
    assert reason in error.reason
    assert str(path) in str(error) and "line 4" in str(error) and column in str(error)
    assert error.code == "bad_data" and isinstance(error, ValueError)


def test_sparkov_short_row_and_missing_header_column(tmp_path: Path) -> None:
    short = tmp_path / "short.csv"
    short.write_text(",".join(SPARKOV_COLUMNS) + "\nt1,1735689718,4303\n")
    with pytest.raises(DataError, match="line 2, column 'acct_num': missing") as caught:
        read_sparkov(short)
    assert caught.value.line == 2

    columns = [c for c in SPARKOV_COLUMNS if c != "amt"]
    no_amount = write_sparkov(tmp_path / "no-amt.csv", [sparkov_row()], columns)
    with pytest.raises(DataError, match="line 1, column 'amt': missing from the header"):
        read_sparkov(no_amount)


def test_unreadable_files_raise_data_error(tmp_path: Path) -> None:
    truncated = write_sparkov(tmp_path / "t.csv.gz", [sparkov_row()] * 200)
    truncated.write_bytes(truncated.read_bytes()[:-40])
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(",".join(SPARKOV_COLUMNS).encode() + b"\nCaf\xe9\n")

    for path in (truncated, empty, latin1):
        with pytest.raises(DataError, match=str(path)):
            read_sparkov(path)
    with pytest.raises(FileNotFoundError):
        read_sparkov(tmp_path / "missing.csv")


def test_unknown_format_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown format 'parquet'"):
        load(tmp_path / "x", "parquet")


# --- the native format ---------------------------------------------------------------------

def make_txn(**overrides: object) -> Txn:
    fields: dict[str, object] = {
        "transaction_id": "t-1", "event_ms": 1_767_225_600_000, "account_id": "acc-1",
        "card_id": "card-1", "merchant_id": "m-1", "merchant_category": "grocery_pos",
        "amount_minor": 1234, "currency": "EUR", "country": "DE", **overrides}
    return Txn(**fields)  # type: ignore[arg-type]


_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"),
                min_size=1, max_size=12)


def _coordinate(limit: float) -> st.SearchStrategy[float | None]:
    return st.none() | st.floats(-limit, limit)


txns = st.builds(
    Txn, transaction_id=_text, event_ms=st.integers(-2**62, 2**62),
    utc_offset_min=st.integers(-720, 840), account_id=_text, card_id=_text,
    merchant_id=_text, merchant_category=_text, amount_minor=st.integers(1, 2**62),
    currency=_text, exponent=st.integers(0, 4), country=_text, lat=_coordinate(90),
    lon=_coordinate(180), home_country=st.none() | _text, home_lat=_coordinate(90),
    home_lon=_coordinate(180), account_created_ms=st.none() | st.integers(-2**62, 2**62),
    is_fraud=st.none() | st.booleans(), pattern=st.none() | _text)


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(txns, max_size=8), compressed=st.booleans())
def test_native_round_trip_is_exact(rows: list[Txn], compressed: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("rows.csv.gz" if compressed else "rows.csv")
        write_native(rows, path)
        assert read_native(path) == rows
        assert load(path, "native") == rows


def test_native_file_has_one_column_per_field(tmp_path: Path) -> None:
    path = tmp_path / "n.csv"
    write_native([make_txn(lat=48.1, is_fraud=True, merchant_id="fraud_Kirlin, and Sons")], path)
    header, row = list(csv.reader(path.read_text().splitlines()))
    assert tuple(header) == NATIVE_COLUMNS == tuple(Txn.__struct_fields__)
    assert dict(zip(header, row, strict=True)) == {
        "transaction_id": "t-1", "event_ms": "1767225600000", "utc_offset_min": "0",
        "account_id": "acc-1", "card_id": "card-1", "merchant_id": "fraud_Kirlin, and Sons",
        "merchant_category": "grocery_pos", "amount_minor": "1234", "currency": "EUR",
        "exponent": "2", "country": "DE", "lat": "48.1", "lon": "", "home_country": "",
        "home_lat": "", "home_lon": "", "account_created_ms": "", "is_fraud": "1",
        "pattern": ""}


def test_native_absent_optional_columns_take_their_defaults(tmp_path: Path) -> None:
    path = tmp_path / "minimal.csv"
    path.write_text("transaction_id,event_ms,account_id,card_id,merchant_id,"
                    "merchant_category,amount_minor,currency,country\n"
                    "t-1,1767225600000,acc-1,card-1,m-1,grocery_pos,1234,EUR,DE\n")
    assert read_native(path) == [make_txn()]


@pytest.mark.parametrize(("column", "value"), [
    ("amount_minor", "0"), ("amount_minor", "12.5"), ("event_ms", ""), ("lat", "95"),
    ("is_fraud", "true"), ("account_created_ms", "soon")])
def test_native_bad_cell_names_line_and_column(tmp_path: Path, column: str,
                                               value: str) -> None:
    path = tmp_path / "n.csv"
    write_native([make_txn(), make_txn(transaction_id="t-2")], path)
    lines = path.read_text().splitlines()
    cells = lines[2].split(",")
    cells[NATIVE_COLUMNS.index(column)] = value
    path.write_text("\n".join([*lines[:2], ",".join(cells)]) + "\n")

    with pytest.raises(DataError) as caught:
        read_native(path)
    assert (caught.value.line, caught.value.column) == (3, column)


def test_write_native_refuses_empty_text_and_leaves_no_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "n.csv.gz"
    write_native([make_txn()], path)
    # "" would read back as None (home_country) or be refused (merchant_id).
    with pytest.raises(ValueError, match="empty text"):
        write_native([make_txn(transaction_id="t-2"), make_txn(home_country="")], path)
    assert read_native(path) == [make_txn()]
    assert [p.name for p in tmp_path.iterdir()] == ["n.csv.gz"]


def test_data_sha256_is_the_digest_of_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    data = bytes(range(256)) * 10_000
    path.write_bytes(data)
    assert data_sha256(path) == hashlib.sha256(data).hexdigest()


def test_split_by_time_puts_the_cutoff_in_the_second_part() -> None:
    rows = [make_txn(transaction_id=f"t-{at}", event_ms=at) for at in (5, 10, 10, 20, 1)]
    before, after = split_by_time(rows, 10)
    assert [r.event_ms for r in before] == [5, 1]
    assert [r.event_ms for r in after] == [10, 10, 20]
