"""`retention ingest`: load event logs (contract CSV/Parquet, CDNOW, MovieLens) into the shop tables."""

from pipelines.ingest.load import (
    IngestError,
    IngestRequest,
    IngestResult,
    ingest,
    ingest_events,
    parse_mapping,
    plain_event_rows,
    store_event_rows,
)

__all__ = [
    "IngestError",
    "IngestRequest",
    "IngestResult",
    "ingest",
    "ingest_events",
    "plain_event_rows",
    "store_event_rows",
    "parse_mapping",
]
