"""`retention simulate`: generate a shop and store it in the source database, day by day.

The shop's parameters and progress live in `<home>/simulator/state.json`; its latent ground
truth in `<home>/simulator/truth.parquet` (for tests and evaluation only, never read by the
platform). `append=True` extends the stored shop by more days with its own parameters.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine

from pipelines.simulate.days import simulate_days
from pipelines.simulate.world import World, build_world, day_date
from retention.atomic import atomic_path
from retention.clock import utc_now
from retention.context import open_platform_engine
from retention.db.shop import ShopBatch, record_load, write_shop_batch
from retention.params import SimulateParams, load_params
from retention.settings import Settings

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
TRUTH_FILE = "truth.parquet"


class SimulatorError(RuntimeError):
    """The request does not fit the shop already simulated (the message says what to do)."""


@dataclass(frozen=True)
class SimulationResult:
    """What a simulate call did.

    Attributes:
        day_from, day_to: simulated days, [day_from, day_to) counted from the shop's start.
        first_date, last_date: the calendar dates of those days.
        generated: rows generated per table.
        inserted: rows newly stored per table (zero on an idempotent re-run).
        seconds: wall time.
    """

    day_from: int
    day_to: int
    first_date: str
    last_date: str
    generated: dict[str, int]
    inserted: dict[str, int]
    seconds: float


def simulate(
    engine: Engine,
    state_dir: Path,
    params: SimulateParams,
    days: int,
    append: bool = False,
    first_day: int = 0,
) -> SimulationResult:
    """Simulate `days` days of the shop and store them.

    Args:
        engine: the source database (migrated).
        state_dir: folder of the simulator state and ground truth.
        params: shop parameters; with `append`, the stored shop's own parameters are used instead.
        days: number of days to generate.
        append: continue the stored shop after its last simulated day.
        first_day: without `append`, the first day to generate (0 is `params.start`); any range
            can be (re)generated because each day has its own random stream.

    Returns:
        Counts of what was generated and newly stored.

    Raises:
        SimulatorError: `append` without a stored shop, or a new shop over a different one.
    """
    started = utc_now()
    state = _read_state(state_dir)
    if append:
        if state is None:
            raise SimulatorError(f"no simulated shop in {state_dir}: run `retention simulate` first")
        params = SimulateParams.model_validate(state["params"])
        day_from, horizon = state["days_simulated"], state["horizon_days"]
    else:
        stored = state and SimulateParams.model_validate(state["params"])
        if stored and stored != params:
            raise SimulatorError(
                f"{state_dir} holds a shop simulated with other parameters (seed {stored.seed}, "
                f"{stored.customers} customers): use --append to extend it, or point "
                "RETENTION_HOME and RETENTION_DATABASE_URL at a fresh location"
            )
        if first_day < 0:
            raise SimulatorError(f"cannot simulate before the shop's start {params.start}")
        day_from, horizon = first_day, state["horizon_days"] if state else first_day + days
    day_to = day_from + days
    world = build_world(params, horizon)
    if state is None:
        _write_truth(world, state_dir)

    generated = dict.fromkeys(ShopBatch().frames(), 0)
    inserted = dict.fromkeys(generated, 0)
    for chunk_from in range(day_from, day_to, params.chunk_days):
        chunk_to = min(chunk_from + params.chunk_days, day_to)
        batch = _chunk_batch(world, chunk_from, chunk_to, first=chunk_from == day_from)
        with engine.begin() as connection:
            counts = write_shop_batch(connection, batch, utc_now())
        for table, frame in batch.frames().items():
            generated[table] += len(frame)
            inserted[table] += counts[table]
        log.info(
            "simulated %s .. %s: %s events (%s new), %s orders",
            day_date(params, chunk_from).date(),
            day_date(params, chunk_to - 1).date(),
            f"{len(batch.events):,}",
            f"{counts['events']:,}",
            f"{len(batch.orders):,}",
        )

    days_simulated = max(day_to, state["days_simulated"] if state else 0)
    _write_state(state_dir, params, horizon, days_simulated)
    seconds = (utc_now() - started).total_seconds()
    with engine.begin() as connection:
        record_load(
            connection,
            kind="simulate",
            source=f"simulator seed={params.seed} days {day_from}..{day_to - 1}",
            content_hash=_fingerprint(params, day_from, day_to),
            status="loaded",
            started_at=started,
            rows_read=sum(generated.values()),
            rows_inserted=sum(inserted.values()),
            detail={"generated": generated, "inserted": inserted},
        )
    return SimulationResult(
        day_from=day_from,
        day_to=day_to,
        first_date=str(day_date(params, day_from).date()),
        last_date=str(day_date(params, day_to - 1).date()),
        generated=generated,
        inserted=inserted,
        seconds=seconds,
    )


def simulate_interval(start: date, end: date, settings: Settings | None = None) -> dict:
    """Simulate the calendar days [start, end) of the shop configured in params.yaml (Airflow task).

    Re-running the same interval stores nothing new, so retries and backfills are safe. A
    zero-length interval (a manual run) means the day on which it starts.

    Returns:
        The result as a plain dict (XCom-friendly).
    """
    settings = settings or Settings.from_env()
    params = load_params(settings.params_path).simulate
    end = max(end, start + timedelta(days=1))
    engine = open_platform_engine(settings)
    try:
        result = simulate(
            engine, settings.simulator_dir, params, (end - start).days, first_day=(start - params.start).days
        )
    finally:
        engine.dispose()
    return asdict(result)


def _chunk_batch(world: World, day_from: int, day_to: int, first: bool) -> ShopBatch:
    days = list(simulate_days(world, day_from, day_to))
    # The first chunk of a run also (re)states the catalogue and everyone who signed up earlier.
    signed_up = world.customers_signing_up(-world.params.prior_signup_days if first else day_from, day_to)
    return ShopBatch(
        customers=signed_up,
        products=world.products if first else pd.DataFrame(),
        orders=pd.concat([d.orders for d in days], ignore_index=True),
        events=pd.concat([d.events for d in days], ignore_index=True),
        reviews=pd.concat([d.reviews for d in days], ignore_index=True),
    )


def _fingerprint(params: SimulateParams, day_from: int, day_to: int) -> str:
    text = json.dumps({"params": params.model_dump(mode="json"), "days": [day_from, day_to]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def read_truth(state_dir: Path) -> pd.DataFrame:
    """The latent customer state of the stored shop (tests and evaluation only)."""
    return pd.read_parquet(state_dir / TRUTH_FILE)


def _read_state(state_dir: Path) -> dict | None:
    path = state_dir / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _write_state(state_dir: Path, params: SimulateParams, horizon: int, days_simulated: int) -> None:
    state = {
        "params": params.model_dump(mode="json"),
        "horizon_days": horizon,
        "days_simulated": days_simulated,
    }
    with atomic_path(state_dir / STATE_FILE) as tmp:
        # Key order is data here: the order of categories and countries drives the seeded draws,
        # so sorting the keys would make an append rebuild a different world.
        tmp.write_text(json.dumps(state, indent=2))


def _write_truth(world: World, state_dir: Path) -> None:
    with atomic_path(state_dir / TRUTH_FILE) as tmp:
        world.truth.to_parquet(tmp, index=False)
