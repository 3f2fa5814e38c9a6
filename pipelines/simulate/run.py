"""`retention simulate`: generate a shop and store it in the source database, day by day.

The shop's parameters and progress live in `<home>/simulator/state.json`; its latent ground
truth in `<home>/simulator/truth.parquet` and, once campaigns are published, the true effect of
every offer for every campaign target in `<home>/simulator/effects.parquet` (for tests and
evaluation only, never read by the platform). `append=True` extends the stored shop by more days
with its own parameters. From a published campaign's as-of day on, the days include its treated
customers' responses (pipelines/simulate/response.py), read from the platform's campaign tables on
every run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from pipelines.simulate.days import simulate_days
from pipelines.simulate.response import CampaignResponses, apply_campaigns, campaign_effects
from pipelines.simulate.world import World, build_world, day_date
from retention.atomic import atomic_path
from retention.clock import utc_now
from retention.context import open_platform_engine
from retention.db.platform import Campaign, CampaignTarget
from retention.db.shop import ShopBatch, record_load, write_shop_batch
from retention.params import NO_OFFER, SimulateParams, load_params
from retention.settings import Settings

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
TRUTH_FILE = "truth.parquet"
EFFECTS_FILE = "effects.parquet"


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
        campaigns: published campaigns whose responses the shop includes.
    """

    day_from: int
    day_to: int
    first_date: str
    last_date: str
    generated: dict[str, int]
    inserted: dict[str, int]
    seconds: float
    campaigns: int = 0


def simulate(
    engine: Engine,
    state_dir: Path,
    params: SimulateParams,
    days: int,
    append: bool = False,
    first_day: int = 0,
) -> SimulationResult:
    """Simulate `days` days of the shop and store them.

    From a published campaign's as-of day on, the days include its treated customers' responses (the
    campaigns are read from the platform's tables on every call, so a re-run gives the same rows),
    and `<state_dir>/effects.parquet` is rewritten whenever the published campaigns change.

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
    campaigns = published_campaigns(engine, params)
    _warn_if_stale(campaigns, state)
    responses = apply_campaigns(world, campaign_targets(engine, campaigns, treated_only=True))

    generated = dict.fromkeys(ShopBatch().frames(), 0)
    inserted = dict.fromkeys(generated, 0)
    for chunk_from in range(day_from, day_to, params.chunk_days):
        chunk_to = min(chunk_from + params.chunk_days, day_to)
        batch = _chunk_batch(world, responses, chunk_from, chunk_to, first=chunk_from == day_from)
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
    seen = dict(zip(campaigns["campaign_id"], campaigns["fingerprint"], strict=True))
    if (state or {}).get("campaigns", {}) != seen or (seen and not (state_dir / EFFECTS_FILE).exists()):
        _write_effects(engine, state_dir, responses, campaigns)
    _write_state(state_dir, params, horizon, days_simulated, seen)
    seconds = (utc_now() - started).total_seconds()
    with engine.begin() as connection:
        record_load(
            connection,
            kind="simulate",
            source=f"simulator seed={params.seed} days {day_from}..{day_to - 1}",
            content_hash=_fingerprint(params, day_from, day_to, seen),
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
        campaigns=len(seen),
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


def _chunk_batch(
    world: World, responses: CampaignResponses, day_from: int, day_to: int, first: bool
) -> ShopBatch:
    days = list(simulate_days(world, day_from, day_to, responses))
    # The first chunk of a run also (re)states the catalogue and everyone who signed up earlier.
    signed_up = world.customers_signing_up(-world.params.prior_signup_days if first else day_from, day_to)
    return ShopBatch(
        customers=signed_up,
        products=world.products if first else pd.DataFrame(),
        orders=pd.concat([d.orders for d in days], ignore_index=True),
        events=pd.concat([d.events for d in days], ignore_index=True),
        reviews=pd.concat([d.reviews for d in days], ignore_index=True),
    )


def _fingerprint(params: SimulateParams, day_from: int, day_to: int, campaigns: dict[str, str]) -> str:
    content: dict = {"params": params.model_dump(mode="json"), "days": [day_from, day_to]}
    if campaigns:  # without campaigns: parameters and days alone, as before campaigns existed
        content["campaigns"] = campaigns
    text = json.dumps(content, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def contact_day(params: SimulateParams, as_of: datetime | pd.Timestamp) -> int:
    """The simulation day on which a campaign as of `as_of` contacts its targets: the as-of's day.

    With an as-of at midnight (as the main job publishes) the days from the contact day are
    exactly the platform's outcome window [as-of, as-of + horizon).
    """
    return int(np.floor((pd.Timestamp(as_of) - pd.Timestamp(params.start)) / pd.Timedelta(days=1)))


def published_campaigns(engine: Engine, params: SimulateParams) -> pd.DataFrame:
    """The published campaigns: campaign_id, day (contact day), horizon_days, fingerprint.

    The fingerprint changes when a campaign is republished with other targets or dates.
    """
    query = select(Campaign.campaign_id, Campaign.as_of, Campaign.horizon_days, Campaign.content_hash)
    with engine.connect() as connection:
        rows = connection.execute(query.order_by(Campaign.campaign_id)).all()
    return pd.DataFrame(
        {
            "campaign_id": pd.Series([r.campaign_id for r in rows], dtype=object),
            "day": pd.Series([contact_day(params, r.as_of) for r in rows], dtype=np.int64),
            "horizon_days": pd.Series([r.horizon_days for r in rows], dtype=np.int64),
            "fingerprint": pd.Series(
                [
                    hashlib.sha256(
                        f"{pd.Timestamp(r.as_of).isoformat()}|{r.horizon_days}|{r.content_hash}".encode()
                    ).hexdigest()[:16]
                    for r in rows
                ],
                dtype=object,
            ),
        }
    )


def campaign_targets(engine: Engine, campaigns: pd.DataFrame, treated_only: bool) -> pd.DataFrame:
    """Targets of the published campaigns: campaign_id, day, horizon_days, customer_id, arm, offer.

    Args:
        engine: the database holding the platform's campaign tables.
        campaigns: `published_campaigns` (gives each campaign's contact day and horizon).
        treated_only: only the contacted targets (offer other than `none`).
    """
    query = select(
        CampaignTarget.campaign_id, CampaignTarget.customer_id, CampaignTarget.arm, CampaignTarget.offer
    )
    if treated_only:
        query = query.where(CampaignTarget.offer != NO_OFFER)
    with engine.connect() as connection:
        rows = connection.execute(
            query.order_by(CampaignTarget.campaign_id, CampaignTarget.customer_id)
        ).all()
    targets = pd.DataFrame(rows, columns=["campaign_id", "customer_id", "arm", "offer"]).astype(object)
    timing = campaigns[["campaign_id", "day", "horizon_days"]]
    return targets.merge(timing, on="campaign_id", how="inner")[
        ["campaign_id", "day", "horizon_days", "customer_id", "arm", "offer"]
    ]


def load_shop(engine: Engine, state_dir: Path) -> CampaignResponses:
    """The stored shop with the responses to its published campaigns (tests and evaluation only).

    Pass it to `pipelines.simulate.response.true_effects` to score any policy against the truth.

    Raises:
        SimulatorError: no simulated shop in `state_dir`.
    """
    state = _read_state(state_dir)
    if state is None:
        raise SimulatorError(f"no simulated shop in {state_dir}: run `retention simulate` first")
    params = SimulateParams.model_validate(state["params"])
    world = build_world(params, state["horizon_days"])
    campaigns = published_campaigns(engine, params)
    return apply_campaigns(world, campaign_targets(engine, campaigns, treated_only=True))


def write_effects(engine: Engine, state_dir: Path) -> Path:
    """(Re)write the true effects of the stored shop's published campaigns; returns the file.

    `simulate` does this whenever the published campaigns change; call it to get the truth of a
    campaign right after publishing it, before the next simulated day.
    """
    shop = load_shop(engine, state_dir)
    return _write_effects(engine, state_dir, shop, published_campaigns(engine, shop.world.params))


def read_effects(state_dir: Path) -> pd.DataFrame:
    """True effects per campaign, target and offer: campaign_id, customer_id, offer, p_return, revenue.

    For tests and evaluation only; every target of every published campaign (all arms) has one
    row per offer of `simulate.response.offers` and one for `none`.
    """
    return pd.read_parquet(state_dir / EFFECTS_FILE)


def _write_effects(
    engine: Engine, state_dir: Path, responses: CampaignResponses, campaigns: pd.DataFrame
) -> Path:
    effects = campaign_effects(responses, campaign_targets(engine, campaigns, treated_only=False))
    path = state_dir / EFFECTS_FILE
    with atomic_path(path) as tmp:
        effects.to_parquet(tmp, index=False)
    log.info("true effects of %d campaigns: %s rows in %s", len(campaigns), f"{len(effects):,}", path)
    return path


def _warn_if_stale(campaigns: pd.DataFrame, state: dict | None) -> None:
    """Warn about campaigns published (or changed) after the days they affect were stored."""
    if state is None:
        return
    seen = state.get("campaigns", {})
    for row in campaigns.itertuples():
        if seen.get(row.campaign_id) != row.fingerprint and row.day < state["days_simulated"]:
            log.warning(
                "campaign %s contacts on day %d but days up to %d were stored before it was published: "
                "those stored days do not include its responses (publish campaigns as of the data end)",
                row.campaign_id,
                row.day,
                state["days_simulated"] - 1,
            )


def read_truth(state_dir: Path) -> pd.DataFrame:
    """The latent customer state of the stored shop (tests and evaluation only)."""
    return pd.read_parquet(state_dir / TRUTH_FILE)


def _read_state(state_dir: Path) -> dict | None:
    path = state_dir / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _write_state(
    state_dir: Path, params: SimulateParams, horizon: int, days_simulated: int, campaigns: dict[str, str]
) -> None:
    state = {
        "params": params.model_dump(mode="json"),
        "horizon_days": horizon,
        "days_simulated": days_simulated,
        "campaigns": campaigns,  # {campaign_id: fingerprint} the stored days and effects include
    }
    with atomic_path(state_dir / STATE_FILE) as tmp:
        # Key order is data here: the order of categories and countries drives the seeded draws,
        # so sorting the keys would make an append rebuild a different world.
        tmp.write_text(json.dumps(state, indent=2))


def _write_truth(world: World, state_dir: Path) -> None:
    with atomic_path(state_dir / TRUTH_FILE) as tmp:
        world.truth.to_parquet(tmp, index=False)
