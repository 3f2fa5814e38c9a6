"""`POST /events`: the shop's new views, carts and purchases, in the event contract, with the write token.

The events are checked as a whole (the request's types here, then the contract's rules) and
stored in the source tables in one transaction, or not at all: a malformed request gets 422
naming each problem and stores nothing. Extraction later validates and publishes them like any
other source rows. A request whose events plainly keep the contract (`plain_event_rows`, no
pandas) is stored by the app's `EventWriter` together with the requests arriving meanwhile (one
commit for many: the route costs little CPU at hundreds of events per second); any other goes
through the contract's full validator (`ingest_events`, which names the problems). Once stored,
the events are handed to the app's `EventApplier`, which updates the customers' online state
(their recommendation lists) in the background, so the response does not wait for a model.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from pipelines.ingest import ingest_events, plain_event_rows
from retention.contract import ContractError
from retention.params import StrictModel
from serving.auth import Role, require
from serving.schemas import ID_MAX_CHARS, PRINTABLE, Problem

MAX_EVENTS = 1_000  # per request: a bigger backfill is a file for `retention ingest`
EventId = Annotated[str, Field(min_length=1, max_length=ID_MAX_CHARS, pattern=PRINTABLE)]


class ContractEvent(StrictModel):
    """One event in the contract's fields (EVALUATION.md); unknown fields are refused."""

    user_id: EventId
    item_id: EventId
    ts: str = Field(max_length=64, description="ISO 8601 time; a time without a zone is UTC")
    event_type: str | None = Field(
        None, max_length=16, description="view, cart or purchase (default: params.yaml)"
    )
    quantity: int | None = Field(None, description="at least 1 (default 1)")
    price: float | None = Field(None, description="unit price, at least 0")
    order_id: EventId | None = None


class EventsIn(StrictModel):
    events: list[ContractEvent] = Field(min_length=1, max_length=MAX_EVENTS)


class EventsAccepted(StrictModel):
    accepted: int = Field(description="events in the request, all stored or already stored")
    stored: int = Field(description="events new to the source tables (a resent event is stored once)")
    customers: list[str] = Field(description="customers whose online state is being updated")


events = APIRouter(
    tags=["events"],
    dependencies=[Depends(require(Role.EVENTS))],
    responses={
        401: {"model": Problem, "description": "missing or invalid token"},
        403: {"model": Problem, "description": "not the events (write) token"},
        429: {"model": Problem, "description": "too many wrong tokens from this client: see Retry-After"},
    },
)


@events.post("/events", status_code=status.HTTP_202_ACCEPTED, response_model=EventsAccepted)
async def post_events(request: Request, body: EventsIn) -> EventsAccepted:
    """Store a customer's (or several customers') new events; their recommendations follow within a second.

    422 lists every problem (field, event numbers counted from 0, the offending values) and nothing
    is stored; a resent event (same content) is accepted but not stored twice.
    """
    accepted_at = time.monotonic()
    records = [event.model_dump(exclude_none=True) for event in body.events]
    state = request.app.state
    plain = plain_event_rows(records, state.params.ingest)
    if plain is not None:  # the common case: one group commit with the requests arriving meanwhile
        stored = await asyncio.wrap_future(state.event_writer.submit(plain))
        rows: list[dict[str, Any]] = plain
    else:  # anything unusual: the contract's own validator says what is wrong (pandas: off the loop)
        try:
            result, frame = await run_in_threadpool(
                ingest_events, state.engine, pd.DataFrame(records), state.params.ingest, "api"
            )
        except ContractError as error:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, _problems(error.problems)) from None
        stored = int(result.inserted.get("events", 0))
        rows = [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]
    state.events.submit(rows, accepted_at)
    return EventsAccepted(
        accepted=len(rows), stored=stored, customers=sorted({str(r["customer_id"]) for r in rows})
    )


def _problems(problems: list[str]) -> list[dict[str, Any]]:
    """The contract's problems in FastAPI's validation-error shape, so every 422 of the route reads alike."""
    return [{"loc": ["body", "events"], "msg": problem, "type": "contract"} for problem in problems]
