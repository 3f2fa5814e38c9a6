"""`retention ingest`: load event logs (contract CSV/Parquet, CDNOW, MovieLens) into the shop tables."""

from pipelines.ingest.load import IngestError, IngestRequest, IngestResult, ingest, parse_mapping

__all__ = ["IngestError", "IngestRequest", "IngestResult", "ingest", "parse_mapping"]
