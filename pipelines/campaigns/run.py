"""Campaign tasks (called by the campaign DAG and `retention campaigns run`): build, validate, publish, lift.

`build` stages the list under RETENTION_HOME/staging/campaigns/<id>/; `validate` runs the GX suite
on it and records the result beside it; `publish` refuses a list that was not validated as it is
now, then replaces the campaign in one transaction and writes the exports atomically. Re-running
an interval rebuilds the same list (same data, models and parameters) and publishing it again
changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select

from feature_store.campaign_log import read_campaign_log
from pipelines.campaigns.history import cold_start_reason
from pipelines.campaigns.lift import measure_due
from pipelines.campaigns.reorder import listed_intervals, reorder_intervals
from pipelines.campaigns.score import (
    CampaignError,
    active_products,
    champion_versions,
    feature_snapshot,
    load_champions,
    recommend_products,
    uplift_champion_version,
)
from pipelines.campaigns.select import CONTROL, EXPORTED_ARMS, TREATMENT, campaign_id, select_targets
from pipelines.campaigns.shards import buckets_for, read_parts, read_plan, score_shard, write_plan
from pipelines.campaigns.state_cache import current_states
from pipelines.campaigns.store import (
    TARGET_COLUMNS,
    CampaignNotFound,
    customer_contacts,
    export_csv,
    export_frame,
    get_campaign,
    write_campaign,
)
from pipelines.campaigns.suite import SUITE_NAME, policy_contacts, suite_parameters, validation_frame
from pipelines.campaigns.summary import summarise
from pipelines.extract.publish import data_end
from retention.atomic import atomic_path
from retention.clock import naive_utc, utc_now
from retention.context import platform_session
from retention.db.platform import Campaign, CampaignTarget
from retention.params import CampaignParams, Params
from retention.paths import stored_path
from retention.settings import Settings

log = logging.getLogger("retention.campaigns")
TARGETS_FILE, META_FILE, VALIDATION_FILE = "targets.parquet", "campaign.json", "validation.json"
EXPORT_FORMATS = ("csv", "parquet")


class CampaignRejected(RuntimeError):
    """The staged list failed its GX suite; nothing was published."""


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def params_hash(params: CampaignParams) -> str:
    """Hash of the campaign section of params.yaml (stored with every list); `shards` and
    `scoring_unit` are left out: they change how a list is computed, not what it holds."""
    return _digest(params.model_dump(mode="json", exclude={"shards", "scoring_unit"}))


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def staging_dir(settings: Settings, campaign: str) -> Path:
    """Where a campaign is staged between build, validation and publication."""
    return settings.staging_dir / "campaigns" / campaign


def export_dir(settings: Settings, campaign: str) -> Path:
    """Where a published campaign's exports live."""
    return settings.home / "campaigns" / campaign


def check_freshness(engine: Engine, as_of: pd.Timestamp, params: CampaignParams) -> pd.Timestamp:
    """The warehouse must be complete up to at most `max_feature_age_hours` before as-of.

    Raises:
        CampaignError: no published data, or it ends too long before as-of.
    """
    end = data_end(engine)
    oldest = as_of - pd.Timedelta(hours=params.max_feature_age_hours)
    if end is None or end < oldest:
        raise CampaignError(
            f"the warehouse is complete up to {end} but a campaign as of {as_of} needs data up to at "
            f"least {oldest} (campaign.max_feature_age_hours); run the extraction DAG first"
        )
    return end


def recently_treated(engine: Engine, as_of: pd.Timestamp, days: int, other_than: str) -> set[str]:
    """Customers in the treatment arm of another campaign with as-of in [as_of - days, as_of)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(CampaignTarget.customer_id)
            .join(Campaign, Campaign.campaign_id == CampaignTarget.campaign_id)
            .where(
                CampaignTarget.arm == TREATMENT,
                Campaign.campaign_id != other_than,
                Campaign.as_of >= as_of - pd.Timedelta(days=days),
                Campaign.as_of < as_of,
            )
        ).scalars()
        return set(rows)


def plan(as_of: datetime, settings: Settings | None = None) -> list[dict[str, Any]]:
    """Plan the campaign as of `as_of` (the first step of a build; see `pipelines.campaigns.shards`).

    Checks freshness, pins the champion versions, decides the policy (cold start or uplift),
    computes and validates the features once and stages them with the plan, replacing any earlier
    build of the campaign (its list needs the new parts). Returns one spec per shard
    (`campaign.shards`) for `score_shard`.

    Raises:
        CampaignError: stale data, or no champion.
    """
    from feature_store.checks import checked_features
    from retention.quality import QualityService

    with platform_session(settings) as (settings, params, engine):
        config = params.campaign
        when = pd.Timestamp(naive_utc(as_of))
        check_freshness(engine, when, config)
        versions = champion_versions(settings)
        features = checked_features(
            engine, when.to_pydatetime(), params.features, QualityService(settings.gx_dir)
        )
        if features.empty:
            raise CampaignError(f"no customer has a purchase before {when}: nobody to score")
        campaign = campaign_id(config.name, when)
        logged = read_campaign_log(engine, before=when).rows
        uplift = uplift_champion_version(settings)
        why = cold_start_reason(logged, uplift is not None, config)
        share = config.cold_start.exploration_share if why else config.exploration_share
        if why is None and uplift is not None:
            why = f"the uplift model (version {uplift}) learnt from {len(logged)} randomised outcomes"
        else:
            uplift = None  # the cold-start rule applies: the risk policy chooses, no estimates needed
        folder = staging_dir(settings, campaign)
        for stale in (TARGETS_FILE, META_FILE, VALIDATION_FILE):  # a new build needs a new list
            (folder / stale).unlink(missing_ok=True)
        return write_plan(
            folder,
            {
                "campaign_id": campaign,
                "as_of": when.isoformat(),
                "shards": config.shards,
                "buckets": buckets_for(len(features), config.scoring_unit),
                "versions": versions,
                "uplift": uplift,
                "why": why,
                "share": share,
            },
            features,
        )


def merge(folder: Path, settings: Settings | None = None) -> Path:
    """Merge the scored shards, select and stage the list (the last step of a build); returns `folder`.

    Raises:
        ShardError: a shard's part is missing or does not match the plan.
    """
    from feature_store.events import read_event_log
    from training.families import family

    planned, features = read_plan(folder)
    with platform_session(settings) as (settings, params, engine):
        config = params.campaign
        when = pd.Timestamp(planned["as_of"])
        campaign = planned["campaign_id"]
        parts, uplift = read_parts(folder, planned, features)
        contacts = customer_contacts(engine, parts["customer_id"].tolist())
        scored = parts.merge(contacts, on="customer_id", how="left", validate="one_to_one")
        cooldown = recently_treated(engine, when, config.cooldown_days, campaign)
        targets, funnel = select_targets(scored, config, campaign, cooldown, uplift, planned["share"])
        targets["features"] = pd.Series(
            feature_snapshot(features, targets["customer_id"]), index=targets.index
        )
        listed = targets["arm"].isin(EXPORTED_ARMS).to_numpy()
        champions = load_champions(settings, planned["versions"])
        if planned["uplift"] is not None:
            champions.extra_versions[family("uplift").registered_name] = planned["uplift"]
        history = read_event_log(engine, "warehouse", before=when.to_pydatetime())
        states = current_states(
            settings,
            champions.recommender,
            family("recommender").registered_name,
            champions.recommender_version,
            history,
            when,
        )
        intervals = reorder_intervals(history, champions.recommender.index.ids, params.recommender.buy_again)
        recommended = recommend_products(
            champions.recommender,
            states,
            history,
            targets.loc[listed, "customer_id"].tolist(),
            config.recommendations,
            when,
            config.recent_purchase_days,
            active_products(engine),
            intervals,
        )
        targets["recommendations"] = [[] for _ in range(len(targets))]
        targets.loc[listed, "recommendations"] = pd.Series(recommended, index=targets.index[listed])
        targets.loc[~listed, "reasons"] = pd.Series(
            [[] for _ in range(int((~listed).sum()))], dtype=object
        ).values
        targets["returned"], targets["revenue"] = None, None
        targets["campaign_id"] = campaign
        (folder / VALIDATION_FILE).unlink(missing_ok=True)  # a new list needs a new validation
        write_staged(folder, targets)
        share, why = planned["share"], planned["why"]
        meta = {
            "campaign_id": campaign,
            "name": config.name,
            "as_of": when.isoformat(),
            "horizon_days": config.horizon_days,
            "model_versions": {**champions.versions, **champions.extra_versions},
            "params_hash": params_hash(config),
            "funnel": funnel,
            "policy": funnel["policy"],
            "summary": {
                **summarise(targets, funnel, config, share, why or ""),
                "reorder_intervals": listed_intervals(
                    recommended, champions.recommender.index.ids, intervals
                ),
            },
        }
        with atomic_path(folder / META_FILE) as tmp:
            tmp.write_text(json.dumps(meta, indent=2))
        log.info(
            "%s: %s policy: %d contacted, %d held out, of %d eligible (%d scored in %d shards)",
            campaign,
            funnel["policy"],
            funnel["contacted"],
            funnel["control"],
            funnel["eligible"],
            funnel["scored"],
            planned["shards"],
        )
        return folder


def build(as_of: datetime, settings: Settings | None = None) -> Path:
    """Plan, score every shard in turn and merge: the campaign as of `as_of`, staged; returns the folder.

    The campaign DAG runs the same three steps as separate tasks, the shards in parallel.
    """
    specs = plan(as_of, settings)
    for spec in specs:
        score_shard(Path(spec["folder"]), spec["shard"], settings)
    return merge(Path(specs[0]["folder"]), settings)


def write_staged(folder: Path, targets: pd.DataFrame) -> None:
    """Stage the targets (atomically; the feature dicts as JSON text, which Parquet keeps as is)."""
    with atomic_path(folder / TARGETS_FILE) as tmp:
        staged = targets[TARGET_COLUMNS].assign(features=targets["features"].map(json.dumps))
        staged.to_parquet(tmp, index=False)


def read_staged(folder: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The staged targets and metadata.

    Raises:
        FileNotFoundError: nothing staged there (run the build first).
    """
    if not (folder / TARGETS_FILE).exists():
        raise FileNotFoundError(f"no campaign staged in {folder}: run the build task first")
    targets = pd.read_parquet(folder / TARGETS_FILE)
    for column in ("reasons", "recommendations"):
        targets[column] = targets[column].map(lambda v: [str(x) for x in v] if v is not None else [])
    targets["features"] = targets["features"].map(json.loads)
    for column in ("returned", "revenue"):  # measured after the horizon, by lift.py
        targets[column] = targets[column].astype(object).where(targets[column].notna(), None)
    return targets, json.loads((folder / META_FILE).read_text())


def validate(folder: Path, settings: Settings | None = None) -> dict[str, Any]:
    """Run the `campaign.targets` suite on the staged list; record the result beside it.

    Raises:
        CampaignRejected: a critical expectation failed (the message names each one).
    """
    from retention.quality import QualityService, data_docs_file

    with platform_session(settings) as (settings, params, engine):
        targets, meta = read_staged(folder)
        contacts = customer_contacts(engine, targets["customer_id"].tolist())
        consent = (
            contacts.set_index("customer_id")["marketing_consent"] if len(contacts) else pd.Series(dtype=bool)
        )
        failed: list[str] = []
        docs_url = None
        if len(targets):  # an empty list (nobody at risk) has nothing to check row by row
            report = QualityService(settings.gx_dir).validate(
                SUITE_NAME,
                validation_frame(targets, consent),
                suite_parameters(params.campaign, policy_contacts(targets)),
            )
            failed = [f"{o.name}: {o.detail}" for o in report.failed]
            docs_url = report.docs_url
        result = {
            "success": not failed,
            "failed": failed,
            "docs_url": docs_url,
            "targets_sha256": _file_hash(folder / TARGETS_FILE),
        }
        with atomic_path(folder / VALIDATION_FILE) as tmp:
            tmp.write_text(json.dumps(result, indent=2))
        if failed:
            listed = "\n  ".join(failed)
            raise CampaignRejected(
                f"campaign {meta['campaign_id']} failed {len(failed)} critical expectation(s); not "
                f"published:\n  {listed}\nGX Data Docs: {data_docs_file(settings.gx_dir, docs_url)}"
            )
        return result


def _write_export(frame: pd.DataFrame, fmt: str, target: Path) -> None:
    with atomic_path(target) as tmp:
        if fmt == "csv":  # formula-like cells neutralised (CSV injection)
            export_csv(frame, tmp)
        else:
            frame.to_parquet(tmp, index=False)


def _marketing_frame(engine: Engine, params: Params, campaign: str, with_email: bool = True) -> pd.DataFrame:
    return export_frame(
        engine,
        campaign,
        risk_deciles=params.campaign.risk_deciles,
        rfm_quantiles=params.features.rfm_quantiles,
        with_email=with_email,
    )


def _write_exports(engine: Engine, settings: Settings, params: Params, campaign: str) -> dict[str, str]:
    # The stored copy holds no e-mail: an address at rest would outlive a withdrawal of consent.
    # Downloads (API, page, `retention campaigns export`) render afresh, with addresses.
    frame = _marketing_frame(engine, params, campaign, with_email=False)
    paths = {}
    for fmt in EXPORT_FORMATS:
        target = export_dir(settings, campaign) / f"targets.{fmt}"
        _write_export(frame, fmt, target)
        paths[fmt] = stored_path(settings.home, target)  # relative to RETENTION_HOME: the home can move
    return paths


def publish(folder: Path, settings: Settings | None = None) -> dict[str, Any]:
    """Publish a validated staged list (replacing any earlier version of the campaign) and export it.

    Raises:
        CampaignRejected: the list was not validated, failed, or changed since validation.
    """
    with platform_session(settings) as (settings, params, engine):
        targets, meta = read_staged(folder)
        campaign = meta["campaign_id"]
        checked = folder / VALIDATION_FILE
        validation = json.loads(checked.read_text()) if checked.exists() else None
        if validation is None or not validation["success"]:
            raise CampaignRejected(f"campaign {campaign} has no passing validation: it cannot be published")
        if validation["targets_sha256"] != _file_hash(folder / TARGETS_FILE):
            raise CampaignRejected(f"campaign {campaign} changed after validation: validate it again")
        content = _digest(
            [
                targets[TARGET_COLUMNS].to_dict("records"),
                meta["model_versions"],
                meta["params_hash"],
                meta["summary"],
            ]
        )
        try:
            existing = get_campaign(engine, campaign)
        except CampaignNotFound:
            existing = None
        exports_present = all(
            (export_dir(settings, campaign) / f"targets.{f}").exists() for f in EXPORT_FORMATS
        )
        if existing is not None and existing["content_hash"] == content and exports_present:
            log.info("%s: already published with the same content; nothing changed", campaign)
            return existing
        n_control = int((targets["arm"] == CONTROL).sum())
        n_listed = int(targets["arm"].isin(EXPORTED_ARMS).sum())
        row = {
            "campaign_id": campaign,
            "name": meta["name"],
            "as_of": pd.Timestamp(meta["as_of"]).to_pydatetime(),
            "horizon_days": meta["horizon_days"],
            "published_at": utc_now(),
            "n_targets": n_listed,
            "n_control": n_control,
            "control_share": n_control / n_listed if n_listed else 0.0,
            "segments": {k: int(v) for k, v in targets["segment"].value_counts().sort_index().items()},
            "model_versions": meta["model_versions"],
            "params_hash": meta["params_hash"],
            "content_hash": content,
            "funnel": meta["funnel"],
            "policy": meta["policy"],
            "summary": meta["summary"],
            "exports": {},
            "lift": None,
        }
        if existing is not None and existing["content_hash"] == content:
            row["published_at"], row["lift"] = existing["published_at"], existing["lift"]
        write_campaign(engine, row, targets)
        exports = _write_exports(engine, settings, params, campaign)
        with engine.begin() as connection:
            connection.execute(
                Campaign.__table__.update().where(Campaign.campaign_id == campaign).values(exports=exports)
            )
        log.info(
            "%s: published %d targets; exports in %s", campaign, len(targets), export_dir(settings, campaign)
        )
        return get_campaign(engine, campaign)


def export(campaign: str, fmt: str, out: Path, settings: Settings | None = None) -> Path:
    """Write a published campaign's marketing export to `out` (atomically)."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"--format must be one of {', '.join(EXPORT_FORMATS)} (got {fmt!r})")
    with platform_session(settings) as (_settings, params, engine):
        frame = _marketing_frame(engine, params, campaign)
    _write_export(frame, fmt, out)
    return out


def measure_lifts(settings: Settings | None = None) -> list[str]:
    """Measure (and log to MLflow) the lift of every campaign whose horizon has passed."""
    with platform_session(settings) as (settings, params, engine):
        return measure_due(engine, settings, params.campaign)


def run_campaign(as_of: datetime, settings: Settings | None = None) -> dict[str, Any]:
    """Build, validate and publish the campaign as of `as_of`, then measure due lifts."""
    folder = build(as_of, settings)
    validate(folder, settings)
    published = publish(folder, settings)
    measure_lifts(settings)
    return published
