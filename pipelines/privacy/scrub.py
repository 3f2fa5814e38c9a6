"""Finding and removing erased customers in free-form values: JSON documents, texts and record lists.

A customer's id or e-mail can sit inside values the platform keeps for other reasons: a validation
result quoting unexpected values, a quarantined batch's rows, a load's rejection reasons. `Terms`
holds what to look for; record lists lose the customers' records, and any other occurrence in a
string is replaced by `ERASED`, so the surrounding value (a count, a message) stays readable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ERASED = "[erased]"
# Columns (and JSON record keys) that hold a customer id in the platform's files and documents:
# the shop's and warehouse's `customer_id`, the event contract's `user_id` (protocol files in MLflow)
# and the simulator's ground truth (`customer`).
ID_KEYS = ("customer_id", "user_id", "customer")
EMAIL_KEYS = ("email",)


def _pattern(term: str, ignore_case: bool) -> str:
    # an id is not found inside a longer one (C001 in C0012): word characters may not touch its ends
    start = r"(?<!\w)" if re.match(r"\w", term[0]) else ""
    end = r"(?!\w)" if re.match(r"\w", term[-1]) else ""
    body = f"(?i:{re.escape(term)})" if ignore_case else re.escape(term)  # ids are case-sensitive
    return f"{start}{body}{end}"


def _compile(ids: frozenset[str], emails: frozenset[str]) -> re.Pattern[str] | None:
    terms = sorted(
        {(t, False) for t in ids} | {(t, True) for t in emails},
        key=lambda term: len(term[0]),
        reverse=True,  # longest first: an e-mail that contains an id is replaced whole
    )
    return re.compile("|".join(_pattern(t, i) for t, i in terms)) if terms else None


@dataclass(frozen=True)
class Terms:
    """The ids and e-mails of the customers being erased.

    Attributes:
        ids: customer ids: records and rows keyed by one of them are dropped.
        emails: their e-mail addresses as stored (compared case-insensitively), replaced anywhere.
        mentioned: the ids also replaced inside free text (messages, pages). Only ids the platform
            knows belong here: a stray request for a common word or number must not rewrite logs.
    """

    ids: frozenset[str]
    emails: frozenset[str] = frozenset()
    mentioned: frozenset[str] = frozenset()
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    _search: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", _compile(self.mentioned & self.ids, self.emails))
        object.__setattr__(self, "_search", _compile(self.ids, self.emails))

    @property
    def lowered_emails(self) -> frozenset[str]:
        """The e-mails in lower case."""
        return frozenset(e.lower() for e in self.emails)

    def needles(self) -> list[bytes]:
        """The mentioned ids and the e-mails as bytes, to search binary files for (UTF-8, and the
        UTF-32 of NumPy's string arrays)."""
        values = [*(self.mentioned & self.ids), *self.emails]
        return [v.encode(encoding) for v in values for encoding in ("utf-8", "utf-32-le")]

    def in_text(self, text: str) -> bool:
        """Whether `text` mentions an id or e-mail (a cheap test before parsing a file)."""
        return self._search is not None and self._search.search(text) is not None

    def scrub_text(self, text: str) -> str:
        """`text` with every e-mail and mentioned id replaced by `ERASED`."""
        return text if self._regex is None else self._regex.sub(ERASED, text)

    def is_customer_record(self, record: Any) -> bool:
        """Whether `record` is a mapping that belongs to an erased customer (by id or e-mail)."""
        if not isinstance(record, dict):
            return False
        if any(isinstance(record.get(k), str) and record[k] in self.ids for k in ID_KEYS):
            return True
        return any(
            isinstance(record.get(k), str) and record[k].lower() in self.lowered_emails for k in EMAIL_KEYS
        )


def scrub(value: Any, terms: Terms) -> tuple[Any, int]:
    """A JSON-like value without the customers' records and with no term left in its strings.

    Returns:
        The cleaned value and how many records were dropped or strings changed (0: unchanged).
    """
    if isinstance(value, str):
        cleaned = terms.scrub_text(value)
        return cleaned, int(cleaned != value)
    if isinstance(value, list):
        kept = [item for item in value if not terms.is_customer_record(item)]
        changes = len(value) - len(kept)
        out = []
        for item in kept:
            cleaned, n = scrub(item, terms)
            out.append(cleaned)
            changes += n
        return out, changes
    if isinstance(value, dict) and _is_split_frame(value):
        value, dropped = _drop_split_rows(value, terms)
        cleaned, changes = scrub({**value, "data": None}, terms)
        return {**cleaned, "data": scrub(value["data"], terms)[0]}, dropped + changes
    if isinstance(value, dict):
        changes = 0
        result = {}
        for key, item in value.items():
            new_key = terms.scrub_text(key) if isinstance(key, str) else key
            cleaned, n = scrub(item, terms)
            result[new_key] = cleaned
            changes += n + int(new_key != key)
        return result, changes
    return value, 0


def drop_records(records: Iterable[dict[str, Any]], terms: Terms) -> tuple[list[dict[str, Any]], int]:
    """The records that do not belong to an erased customer, and how many were dropped."""
    all_records = list(records)
    kept = [r for r in all_records if not terms.is_customer_record(r)]
    return kept, len(all_records) - len(kept)


def _is_split_frame(value: dict[str, Any]) -> bool:
    """A frame in pandas' "split" orientation (MLflow's input examples): columns, and rows as lists."""
    return isinstance(value.get("columns"), list) and isinstance(value.get("data"), list)


def _drop_split_rows(frame: dict[str, Any], terms: Terms) -> tuple[dict[str, Any], int]:
    columns = frame["columns"]
    keys = [i for i, c in enumerate(columns) if c in ID_KEYS or c in EMAIL_KEYS]
    rows = frame["data"]
    kept = [
        row
        for row in rows
        if not (
            isinstance(row, list)
            and terms.is_customer_record({columns[i]: row[i] for i in keys if i < len(row)})
        )
    ]
    return {**frame, "data": kept}, len(rows) - len(kept)
