"""Ingest hardening (issue 17): every malformed file a tester stored or crashed on is now refused whole,
with the file, place and reason named, and an overlapping file keeps `orders` in step with `events`."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Row, select
from typer.testing import CliRunner

from cli.main import app
from pipelines.ingest import IngestRequest, ingest
from retention.contract import ContractError
from retention.db.models import Event, Load, Order
from retention.params import IngestParams, load_params
from tests.conftest import ROOT, table_counts

HEADER = "user_id,item_id,ts,event_type,quantity,price,order_id\n"
GOOD = HEADER + "u1,i1,2024-01-01 10:00:00,purchase,1,9.99,o1\n"
LINE = "u2,i2,2024-02-01 10:00:00,view,1,5.00,\n"  # a good line before each bad one
BIG = 5 * 1024 * 1024  # the tester's 5 MB fields


def _events(bad_line: str) -> bytes:
    return (HEADER + LINE + bad_line + "\n").encode()


# case -> (file kind, file content, what the refusal must say). Each was stored or crashed before.
CASES: dict[str, tuple[str, bytes, str]] = {
    "duplicated user_id header": (
        "events",
        b"user_id,item_id,ts,user_id\nu1,i1,2024-01-01,u2\n",
        "events.csv: column 'user_id' appears twice (columns 1, 4)",
    ),
    "date in year 0001": (
        "events",
        _events("u1,i1,0001-01-01 00:00:00,view,1,1.00,"),
        "events.csv: column 'ts': implausible date (allowed 1990-01-01 to",
    ),
    "date in year 1677": (
        "events",
        _events("u1,i1,1677-09-21 00:12:43,view,1,1.00,"),
        "column 'ts': implausible date",
    ),
    "date in year 2099": (
        "events",
        _events("u1,i1,2099-01-01 00:00:00,view,1,1.00,"),
        "column 'ts': implausible date",
    ),
    "price inf": (
        "events",
        _events("u1,i1,2024-01-01,purchase,1,inf,o9"),
        "column 'price': not a finite number at line 3",
    ),
    "price 1e309": (
        "events",
        _events("u1,i1,2024-01-01,purchase,1,1e309,o9"),
        "column 'price': not a finite number at line 3",
    ),
    "5 MB id": (
        "events",
        _events("u" * BIG + ",i1,2024-01-01,view,1,1.00,"),
        "column 'user_id': id longer than 64 characters at line 3",
    ),
    "5 MB review text": (
        "reviews",
        b"user_id,item_id,ts,rating,text\nu1,i1,2024-01-02,5,fine\nu1,i2,2024-01-02,4," + b"x" * BIG + b"\n",
        "reviews.csv: column 'text': longer than 10,000 characters at line 3",
    ),
    "65-character id": (
        "events",
        _events("u" * 65 + ",i1,2024-01-01,view,1,1.00,"),
        "id longer than 64 characters at line 3",
    ),
    "NUL byte in an id": (
        "events",
        _events("u\x001,i1,2024-01-01,view,1,1.00,"),
        "column 'user_id': id holds a control or zero-width character at line 3",
    ),
    "formula id =HYPERLINK": (
        "events",
        _events('"=HYPERLINK(""http://evil.example"",""x"")",i1,2024-01-01,view,1,1.00,'),
        "column 'user_id': id starts with =, +, - or @",
    ),
    "formula id @SUM": (
        "events",
        _events("u1,@SUM(1+1)*cmd|' /C calc'!A0,2024-01-01,view,1,1.00,"),
        "column 'item_id': id starts with =, +, - or @",
    ),
    "e-mail not-an-email with consent": (
        "customers",
        b"user_id,country,marketing_consent,email\nu1,DE,yes,u1@example.com\nu2,FR,yes,not-an-email\n",
        "customers.csv: column 'email': not a valid e-mail address at line 3 (got values not shown)",
    ),
    "e-mail a formula with consent": (
        "customers",
        b'user_id,country,marketing_consent,email\nu2,FR,yes,"=HYPERLINK(""http://evil.example"")"\n',
        "column 'email': not a valid e-mail address at line 2",
    ),
    "e-mail formula-shaped but address-like": (
        "customers",
        b"user_id,country,marketing_consent,email\nu2,FR,yes,=1+1@example.com\n",
        "column 'email': not a valid e-mail address at line 2",
    ),
    "country 99 with consent": (
        "customers",
        b"user_id,country,marketing_consent,email\nu2,99,yes,u2@example.com\n",
        "customers.csv: column 'country': not an ISO 3166-1 two-letter country code at line 2",
    ),
    "id differing from a stored one by a zero-width space": (
        "events",
        _events("u\u200b1,i1,2024-01-01,view,1,1.00,"),
        "column 'user_id': id holds a control or zero-width character at line 3",
    ),
    "id not in Unicode NFC": (
        "events",
        _events("Cafe\u0301,i1,2024-01-01,view,1,1.00,"),
        "column 'user_id': id not in Unicode NFC form at line 3",
    ),
    "signup date in 2099": (
        "customers",
        b"user_id,signup_date\nu2,2099-05-01\n",
        "customers.csv: column 'signup_date': implausible date",
    ),
    "empty file": ("events", b"", "events.csv: empty file (0 bytes)"),
    "header only": ("events", HEADER.encode(), "events.csv: no data rows"),
    "non-UTF-8 bytes": (
        "events",
        HEADER.encode() + LINE.encode() + b"u\xff1,i1,2024-01-01,view,1,1.00,\n",
        "events.csv: not UTF-8 text: byte 0xff at byte offset 94 (line 3)",
    ),
    "non-UTF-8 side file": (
        "products",
        b"item_id,title\ni1,Caf\xe9\n",
        "products.csv: not UTF-8 text: byte 0xe9 at byte offset 20 (line 2)",
    ),
    "ragged line": (
        "events",
        _events("u1,i1,2024-01-01,view,1,1.00,o1,extra"),
        "events.csv: not readable as .csv columns",
    ),
}


@pytest.fixture
def ingest_params() -> IngestParams:
    return load_params(ROOT / "params.yaml").ingest


def _request(tmp_path: Path, kind: str, content: bytes) -> IngestRequest:
    """The bad file as `kind`; a good event log goes with side files."""
    (tmp_path / f"{kind}.csv").write_bytes(content)
    if kind == "events":
        return IngestRequest(tmp_path / "events.csv")
    (tmp_path / "events.csv").write_text(GOOD)
    return IngestRequest(tmp_path / "events.csv", **{kind: tmp_path / f"{kind}.csv"})


def _last_load(engine) -> Row:  # noqa: ANN001
    with engine.connect() as connection:
        return connection.execute(select(Load).order_by(Load.load_id.desc())).first()


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_file_is_refused_whole_named_and_recorded(
    engine,  # noqa: ANN001
    tmp_path: Path,
    ingest_params: IngestParams,
    case: str,
) -> None:
    # given a shop holding a good load (u1 among its customers)
    (tmp_path / "earlier.csv").write_text(GOOD)
    ingest(engine, IngestRequest(tmp_path / "earlier.csv"), ingest_params)
    before = table_counts(engine)
    kind, content, message = CASES[case]
    (tmp_path / "bad").mkdir()
    # when the malformed file is ingested
    with pytest.raises(ContractError) as refused:
        ingest(engine, _request(tmp_path / "bad", kind, content), ingest_params)
    # then it is refused with file, place and reason; nothing is stored; the load log has the refusal
    assert message in str(refused.value)
    assert len(str(refused.value)) < 2000  # a 5 MB value is cut, not quoted whole
    assert "example.com" not in str(refused.value)  # e-mail addresses are personal data: never quoted
    assert table_counts(engine) == before
    last = _last_load(engine)
    assert last.status == "rejected" and any(message in p for p in last.detail["problems"])


@pytest.mark.parametrize("case", ["empty file", "non-UTF-8 bytes", "duplicated user_id header", "5 MB id"])
def test_cli_refuses_with_a_one_line_reason_not_a_traceback(
    migrated_home: Path, tmp_path: Path, case: str
) -> None:
    kind, content, message = CASES[case]
    request = _request(tmp_path, kind, content)
    result = CliRunner().invoke(app, ["ingest", "--events", str(request.events)])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_plausible_edges_are_accepted(engine, tmp_path: Path, ingest_params: IngestParams) -> None:  # noqa: ANN001
    # given values at the edges of every new rule: none of them is refused
    path = tmp_path / "edges.csv"
    path.write_text(
        HEADER
        + "u" * 64 + ",i1,1990-01-01 00:00:00,purchase,2147483647,0,o1\n"
        + "Café,i-2,2024-01-01T00:00:00Z,view,1,99999.5,\n"
        + "C 1,i3,2024-01-01,view,1,1e3,\n"
    )  # fmt: skip
    customers = tmp_path / "customers.csv"
    customers.write_text(
        "user_id,signup_date,country,marketing_consent,email\n"
        "Café,1990-01-01,gb,yes,first.last+tag@sub.example.co.uk\nC 1,,,no,\n"
    )
    ingest(engine, IngestRequest(path, customers=customers), ingest_params)
    assert table_counts(engine)["events"] == 3 and table_counts(engine)["customers"] == 3


def test_overlapping_file_adding_a_line_recomputes_the_order(
    engine,  # noqa: ANN001
    tmp_path: Path,
    ingest_params: IngestParams,
) -> None:
    # given an order o1 of one line (1 x 9.99)
    first = tmp_path / "first.csv"
    first.write_text(GOOD)
    ingest(engine, IngestRequest(first), ingest_params)
    # when a second file repeats that line and adds another line to o1 (2 x 5.00, later)
    second = tmp_path / "second.csv"
    second.write_text(GOOD + "u1,i2,2024-01-01 10:07:00,purchase,2,5.00,o1\n")
    result = ingest(engine, IngestRequest(second), ingest_params)
    # then the order is recomputed from its events: 3 items, 19.99, the last line's time
    with engine.connect() as connection:
        order = connection.execute(select(Order)).one()
        lines = connection.execute(select(Event).where(Event.order_id == "o1")).all()
    assert len(lines) == 2
    assert order.n_items == sum(e.quantity for e in lines) == 3
    assert order.total_amount == pytest.approx(19.99)
    assert str(order.ts) == "2024-01-01 10:07:00"
    assert result.inserted["events"] == 1 and result.inserted["orders"] == 1  # one order changed
    # and loading the second file again changes nothing
    again = ingest(engine, IngestRequest(second), ingest_params)
    assert sum(again.inserted.values()) == 0


def test_an_order_stored_for_another_customer_refuses_the_load(
    engine,  # noqa: ANN001
    tmp_path: Path,
    ingest_params: IngestParams,
) -> None:
    first = tmp_path / "first.csv"
    first.write_text(GOOD)
    ingest(engine, IngestRequest(first), ingest_params)
    before = table_counts(engine)
    other = tmp_path / "other.csv"
    other.write_text(HEADER + "u2,i2,2024-01-02,purchase,1,5.00,o1\n")
    with pytest.raises(ContractError, match="other.csv: column 'order_id': order already stored for another"):
        ingest(engine, IngestRequest(other), ingest_params)
    assert table_counts(engine) == before
    assert _last_load(engine).status == "rejected"
