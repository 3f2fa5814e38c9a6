"""Campaign storage: publish a target list atomically, read campaigns back, build marketing exports.

A campaign is written in one transaction (its row and all its targets replace any earlier version
of the same id), so readers see the old list or the new one, never a mix. Contact details are not
stored with targets: `export_frame` joins e-mail addresses at export time, only for consenting
customers of the treatment arm (the control arm must not be contacted).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import Engine, delete, insert, select

from retention.db.platform import Campaign, CampaignTarget
from retention.db.warehouse import WAREHOUSE

TARGET_COLUMNS = [c.name for c in CampaignTarget.__table__.columns]
CAMPAIGN_COLUMNS = [c.name for c in Campaign.__table__.columns]
CONTACT_COLUMNS = ["customer_id", "marketing_consent", "email"]
IN_LIST_IDS = 5000  # ids per IN (...) list (SQLite allows 32,766 variables per statement)
EXPORT_COLUMNS = [
    "campaign_id",
    "customer_id",
    "arm",
    "rank",
    "segment",
    "risk_decile",
    "p_churn",
    "predicted_value",
    "value_at_stake",
    "reasons",
    "recommendations",
    "email",
]


class CampaignNotFound(LookupError):
    """No published campaign has this id."""

    def __init__(self, campaign_id: str) -> None:
        super().__init__(f"no published campaign {campaign_id!r} (see `retention campaigns list`)")
        self.campaign_id = campaign_id


def write_campaign(engine: Engine, campaign: dict[str, Any], targets: pd.DataFrame) -> None:
    """Replace the campaign and its targets in one transaction.

    Args:
        engine: the platform database.
        campaign: one value per `platform_campaigns` column.
        targets: one row per target with the `platform_campaign_targets` columns.
    """
    missing = sorted(set(CAMPAIGN_COLUMNS) - set(campaign)) + sorted(set(TARGET_COLUMNS) - set(targets))
    if missing:
        raise ValueError(f"campaign write lacks columns {missing}")
    rows = targets[TARGET_COLUMNS].to_dict("records", into=dict)
    campaign_id = campaign["campaign_id"]
    with engine.begin() as connection:
        connection.execute(delete(CampaignTarget).where(CampaignTarget.campaign_id == campaign_id))
        connection.execute(delete(Campaign).where(Campaign.campaign_id == campaign_id))
        connection.execute(insert(Campaign).values(**{k: campaign[k] for k in CAMPAIGN_COLUMNS}))
        if rows:
            connection.execute(insert(CampaignTarget), rows)


def set_lift(engine: Engine, campaign_id: str, lift: dict[str, Any]) -> None:
    """Record a campaign's measured lift."""
    with engine.begin() as connection:
        found = connection.execute(
            Campaign.__table__.update().where(Campaign.campaign_id == campaign_id).values(lift=lift)
        )
        if found.rowcount == 0:
            raise CampaignNotFound(campaign_id)


def list_campaigns(engine: Engine) -> list[dict[str, Any]]:
    """Every published campaign, newest as-of first (without targets)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(Campaign.__table__).order_by(Campaign.as_of.desc(), Campaign.name)
        ).mappings()
        return [dict(row) for row in rows]


def get_campaign(engine: Engine, campaign_id: str) -> dict[str, Any]:
    """One campaign's row.

    Raises:
        CampaignNotFound: no such campaign.
    """
    with engine.connect() as connection:
        row = (
            connection.execute(select(Campaign.__table__).where(Campaign.campaign_id == campaign_id))
            .mappings()
            .first()
        )
    if row is None:
        raise CampaignNotFound(campaign_id)
    return dict(row)


def campaign_targets(engine: Engine, campaign_id: str) -> pd.DataFrame:
    """The campaign's targets in rank order (no contact details).

    Raises:
        CampaignNotFound: no such campaign.
    """
    get_campaign(engine, campaign_id)
    with engine.connect() as connection:
        rows = (
            connection.execute(
                select(*CampaignTarget.__table__.columns)
                .where(CampaignTarget.campaign_id == campaign_id)
                .order_by(CampaignTarget.rank)
            )
            .mappings()
            .all()
        )
    return pd.DataFrame([dict(r) for r in rows], columns=TARGET_COLUMNS)


def customer_contacts(engine: Engine, customer_ids: list[str]) -> pd.DataFrame:
    """customer_id, marketing_consent, email of the given customers, read from the warehouse now.

    Used for exclusions, the consent check of validation and the export's join; never stored.
    """
    table = WAREHOUSE["customers"]
    parts = [pd.DataFrame(columns=CONTACT_COLUMNS)]
    with engine.connect() as connection:
        for start in range(0, len(customer_ids), IN_LIST_IDS):
            rows = connection.execute(
                select(table.c.customer_id, table.c.marketing_consent, table.c.email).where(
                    table.c.customer_id.in_(customer_ids[start : start + IN_LIST_IDS])
                )
            ).all()
            parts.append(pd.DataFrame(rows, columns=CONTACT_COLUMNS))
    return pd.concat(parts, ignore_index=True)


def export_frame(engine: Engine, campaign_id: str) -> pd.DataFrame:
    """The marketing export: targets plus e-mail for consenting customers of the treatment arm.

    Consent is read now, not when the list was made, so a withdrawal before export is honoured.
    Reasons and recommendations become blank-separated strings (CSV-friendly).
    """
    targets = campaign_targets(engine, campaign_id)
    contacts = customer_contacts(engine, targets["customer_id"].tolist())
    consenting = contacts.loc[contacts["marketing_consent"].fillna(False).astype(bool)]
    emails = dict(zip(consenting["customer_id"], consenting["email"], strict=True))
    treated = targets["arm"].eq("treatment")
    out = targets.assign(
        reasons=targets["reasons"].map(lambda v: " ".join(v or [])),
        recommendations=targets["recommendations"].map(lambda v: " ".join(v or [])),
        email=targets["customer_id"].map(emails).where(treated),
    )
    return out[EXPORT_COLUMNS]
