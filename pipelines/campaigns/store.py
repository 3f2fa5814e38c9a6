"""Campaign storage: publish a target list atomically, read campaigns back, build marketing exports.

A campaign is written in one transaction (its row and all its targets replace any earlier version
of the same id), so readers see the old list or the new one, never a mix. Contact details are not
stored with targets, nor in the warehouse: `export_frame` reads consent and e-mail from the shop's
`customers` table each time it renders (every download and page view), so a consent withdrawn in
the source counts at once, without waiting for an extraction. Only consenting customers of the
treatment arm get an address (the control arm must not be contacted); a contact whose consent is
gone is listed as not to be contacted.

The export is written for the marketer who acts on it: one row per customer to contact or to hold
out (untreated rows are only logged), the offer, the expected effect and profit, the risk as a
percentage with what its decile means, the reasons in words with the customer's own values, and
the recommended products with titles, categories and why (`pipelines.campaigns.explain`). CSV
files go through `export_csv`, which neutralises formula-like cells (CSV injection).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import IO, Any

import numpy as np
import pandas as pd
from sqlalchemy import ColumnElement, Engine, and_, delete, func, insert, or_, select

from pipelines.campaigns.explain import (
    BESTSELLERS_PER_CATEGORY,
    DEFAULT_RFM_QUANTILES,
    explain_recommendations,
    reasons_in_words,
    risk_decile_text,
    top_per_category,
)
from pipelines.campaigns.reorder import due_reorders
from pipelines.campaigns.select import CONTROL, EXPORTED_ARMS, TREATMENT
from retention.db.models import Customer
from retention.db.platform import Campaign, CampaignTarget
from retention.db.warehouse import WAREHOUSE
from retention.params import NO_OFFER

TARGET_COLUMNS = [c.name for c in CampaignTarget.__table__.columns]
CAMPAIGN_COLUMNS = [c.name for c in Campaign.__table__.columns]
CONSENT_COLUMNS = ["customer_id", "marketing_consent", "email"]  # what `customer_contacts` reads
EVENT_COLUMNS = ["customer_id", "product_id", "event_type", "ts"]
PRODUCT_COLUMNS = ["product_id", "category", "title"]
IN_LIST_IDS = 5000  # ids per IN (...) list (SQLite allows 32,766 variables per statement)
EVENT_CHUNK_IDS = 1000  # customers per events query (plus their recommended products in the same list)
DEFAULT_RISK_DECILES = 10  # params.campaign.risk_deciles as shipped
CONTACT, HOLD_OUT = "contact", "hold out — do not contact"
NO_CONSENT = "do not contact — no marketing consent"  # chosen, but consent was withdrawn since
ACTIONS = {TREATMENT: CONTACT, CONTROL: HOLD_OUT}
CSV_LINE_END = "\r\n"  # RFC 4180: cells with CR or LF get quoted
LIST_SEPARATOR = "; "  # between reasons and between products in one cell
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet may run a cell starting so (OWASP)
EXPORT_COLUMNS = [
    "campaign_id",
    "customer_id",
    "rank",
    "action",
    "offer",
    "lift_measured_on",
    "churn_risk_pct",
    "risk_decile",
    "risk_decile_meaning",
    "segment",
    "extra_return_chance_pct",
    "expected_profit_eur",
    "predicted_value_eur",
    "reasons",
    "recommended_products",
    "recommended_product_ids",
    "email",
]
EXPORT_DESCRIPTIONS = {
    "campaign_id": "the campaign (name and as-of date)",
    "customer_id": "the customer (pseudonymous id)",
    "rank": "1 = the policy's first choice",
    "action": f"'{CONTACT}', '{HOLD_OUT}' (the random hold-out that measures the effect) or "
    f"'{NO_CONSENT}' (consent withdrawn after the list was made)",
    "offer": "the offer to send (blank for hold-outs)",
    "lift_measured_on": "the date the campaign's effect is measured (as-of + horizon)",
    "churn_risk_pct": "predicted chance (%) of no purchase within the horizon without contact",
    "risk_decile": "1 = lowest risk of this list .. 10 = highest",
    "risk_decile_meaning": "the decile in words",
    "segment": "RFM segment at as-of",
    "extra_return_chance_pct": "expected extra chance (% points) that the customer buys again thanks to the offer",
    "expected_profit_eur": "expected extra profit of the offer after its cost (EUR)",
    "predicted_value_eur": "spend expected within the horizon at the customer's recent rate (EUR)",
    "reasons": "why the model sees the risk, with the customer's own values, most important first",
    "recommended_products": "products to show, best first: title (category): why",
    "recommended_product_ids": "the same products' ids, blank-separated",
    "email": "only for consenting customers to contact (consent and address read at download time)",
}


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
    """customer_id, marketing_consent, email of the given customers, read from the shop's `customers` now.

    The source, not the warehouse (which holds no contact details): a consent withdrawn in the shop
    counts from the next read on. Used for exclusions, the consent check of validation and the
    export's join; never stored.
    """
    table = Customer.__table__
    parts = [pd.DataFrame(columns=CONSENT_COLUMNS)]
    with engine.connect() as connection:
        for start in range(0, len(customer_ids), IN_LIST_IDS):
            rows = connection.execute(
                select(table.c.customer_id, table.c.marketing_consent, table.c.email).where(
                    table.c.customer_id.in_(customer_ids[start : start + IN_LIST_IDS])
                )
            ).all()
            parts.append(pd.DataFrame(rows, columns=CONSENT_COLUMNS))
    return pd.concat(parts, ignore_index=True)


def _json(value: Any) -> Any:
    """A JSON column's value (some drivers hand JSON back as text)."""
    return json.loads(value) if isinstance(value, str) else value


def _chunks(ids: Sequence[str], size: int) -> list[list[str]]:
    return [list(ids[start : start + size]) for start in range(0, len(ids), size)]


def catalogue(engine: Engine) -> pd.DataFrame:
    """product_id, category, title of every warehouse product (the catalogue's current values)."""
    table = WAREHOUSE["products"]
    with engine.connect() as connection:
        rows = connection.execute(select(table.c.product_id, table.c.category, table.c.title)).all()
    return pd.DataFrame(rows, columns=PRODUCT_COLUMNS).astype({"product_id": str})


def product_details(engine: Engine, product_ids: Collection[str]) -> pd.DataFrame:
    """product_id, category, title of the given warehouse products (unknown ids are left out)."""
    table = WAREHOUSE["products"]
    parts = [pd.DataFrame(columns=PRODUCT_COLUMNS)]
    with engine.connect() as connection:
        for chunk in _chunks(sorted({str(p) for p in product_ids}), IN_LIST_IDS):
            rows = connection.execute(
                select(table.c.product_id, table.c.category, table.c.title).where(
                    table.c.product_id.in_(chunk)
                )
            ).all()
            parts.append(pd.DataFrame(rows, columns=PRODUCT_COLUMNS))
    return pd.concat(parts, ignore_index=True).astype({"product_id": str})


def category_bestsellers(
    engine: Engine,
    before: datetime | None,
    categories: Collection[str] | None = None,
    top: int = BESTSELLERS_PER_CATEGORY,
) -> set[str]:
    """The `top` most purchased products of each category, counting warehouse purchases before `before`.

    Args:
        engine: the platform database.
        before: only purchases before it count (None: all).
        categories: only these categories (None: all).
        top: products per category.
    """
    events, products = WAREHOUSE["events"], WAREHOUSE["products"]
    query = (
        select(products.c.product_id, products.c.category, func.count().label("purchases"))
        .select_from(events.join(products, events.c.product_id == products.c.product_id))
        .where(events.c.event_type == "purchase", products.c.category.is_not(None))
        .group_by(products.c.product_id, products.c.category)
    )
    if before is not None:
        query = query.where(events.c.ts < before)
    if categories is not None:
        if not categories:
            return set()
        query = query.where(products.c.category.in_(sorted(categories)))
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    counts = pd.DataFrame(rows, columns=["product_id", "category", "purchases"]).astype({"product_id": str})
    return top_per_category(counts[["product_id", "purchases"]], counts[["product_id", "category"]], top)


def explanation_events(
    engine: Engine, customer_ids: Sequence[str], recommendations: Sequence[Sequence[str]], before: datetime
) -> pd.DataFrame:
    """What `explain_recommendations` reads of these customers before `before`: their purchases and
    carts, and their views of the products recommended to them (customer_id, product_id, event_type, ts).
    """
    table = WAREHOUSE["events"]
    parts = [pd.DataFrame(columns=EVENT_COLUMNS)]
    rows_of = list(zip([str(c) for c in customer_ids], recommendations, strict=True))
    with engine.connect() as connection:
        for start in range(0, len(rows_of), EVENT_CHUNK_IDS):
            chunk = rows_of[start : start + EVENT_CHUNK_IDS]
            products = sorted({str(p) for _, recs in chunk for p in (recs or [])})
            wanted: ColumnElement[bool] = table.c.event_type.in_(["purchase", "cart"])
            if products:
                wanted = or_(wanted, table.c.product_id.in_(products))
            rows = connection.execute(
                select(*(table.c[c] for c in EVENT_COLUMNS)).where(
                    and_(table.c.customer_id.in_([c for c, _ in chunk]), table.c.ts < before, wanted)
                )
            ).all()
            parts.append(pd.DataFrame(rows, columns=EVENT_COLUMNS))
    frame = pd.concat(parts, ignore_index=True)
    return frame.astype({"customer_id": str, "product_id": str}).sort_values("ts", kind="stable")


def _rounded(values: pd.Series, digits: int, keep: pd.Series | None = None) -> pd.Series:
    """Numbers rounded to `digits`, blank (NaN) where unknown or outside `keep`."""
    rounded = pd.to_numeric(values, errors="coerce").astype(float).round(digits)
    return rounded if keep is None else rounded.where(keep)


def _due_reorders(
    campaign: dict[str, Any], events: pd.DataFrame, ids: list[str], as_of: datetime
) -> pd.DataFrame | None:
    """The listed products due for reorder at as-of, by the intervals kept with the campaign
    (none for campaigns made before them)."""
    intervals = (campaign.get("summary") or {}).get("reorder_intervals") or {}
    if not intervals or not ids:
        return None
    columns = np.array(list(intervals), dtype=str)
    days = np.array(list(intervals.values()), dtype=float)
    return due_reorders(events, ids, columns, days, pd.Timestamp(as_of))


def export_frame(
    engine: Engine,
    campaign_id: str,
    limit: int | None = None,
    risk_deciles: int = DEFAULT_RISK_DECILES,
    rfm_quantiles: int = DEFAULT_RFM_QUANTILES,
    with_email: bool = True,
) -> pd.DataFrame:
    """The marketing export: one row per customer to contact or hold out, in rank order (`EXPORT_COLUMNS`).

    Consent and e-mail are read from the shop's `customers` now, not when the list was made, so a
    withdrawal is honoured by the next render: that customer's row says `NO_CONSENT`, without
    offer, expected figures or address. E-mail addresses appear only on contact rows. Hold-out rows
    carry no offer and no expected figures: they must not be contacted. Campaigns published before
    offers (offer "none" on treatment rows, no stored features) export a blank offer and reasons
    without values.

    Args:
        engine: the platform database.
        campaign_id: the published campaign.
        limit: only the first rows (a page's preview); None = all.
        risk_deciles: params.campaign.risk_deciles (the decile in words).
        rfm_quantiles: params.features.rfm_quantiles (RFM scores in words).
        with_email: False leaves the `email` column blank: for a copy that is stored, since an
            address at rest would outlive a withdrawal.

    Returns:
        The `EXPORT_COLUMNS` (numbers rounded; lists as "; "-separated text).

    Raises:
        CampaignNotFound: no such campaign.
    """
    campaign = get_campaign(engine, campaign_id)
    targets = campaign_targets(engine, campaign_id)
    targets = targets.loc[targets["arm"].isin(EXPORTED_ARMS)].reset_index(drop=True)
    if limit is not None:
        targets = targets.head(limit).reset_index(drop=True)
    ids = targets["customer_id"].astype(str).tolist()
    recommended = [list(v or []) for v in targets["recommendations"].map(_json)]
    as_of = pd.Timestamp(campaign["as_of"]).to_pydatetime()
    contacts = customer_contacts(engine, ids)
    consenting = set(contacts.loc[contacts["marketing_consent"].fillna(False).astype(bool), "customer_id"])
    emails = dict(zip(contacts["customer_id"], contacts["email"], strict=True))
    products = catalogue(engine) if ids else pd.DataFrame(columns=PRODUCT_COLUMNS)
    categories = set(
        products.loc[products["product_id"].isin({p for r in recommended for p in r}), "category"].dropna()
    )
    events = explanation_events(engine, ids, recommended, as_of)
    explained = explain_recommendations(
        ids,
        recommended,
        events,
        products,
        category_bestsellers(engine, as_of, categories) if ids else set(),
        _due_reorders(campaign, events, ids, as_of),
    )
    chosen = targets["arm"].eq(TREATMENT)
    contact = chosen & targets["customer_id"].astype(str).isin(consenting)
    offer = targets["offer"].where(contact & targets["offer"].ne(NO_OFFER))
    features = targets["features"].map(lambda v: _json(v) or {})
    reasons = [
        LIST_SEPARATOR.join(reasons_in_words(list(_json(codes) or []), f, rfm_quantiles))
        for codes, f in zip(targets["reasons"], features, strict=True)
    ]
    measured_on = (as_of + pd.Timedelta(days=int(campaign["horizon_days"]))).date().isoformat()
    return pd.DataFrame(
        {
            "campaign_id": targets["campaign_id"].astype(str),
            "customer_id": targets["customer_id"].astype(str),
            "rank": targets["rank"].astype(np.int64),
            "action": targets["arm"].map(ACTIONS).where(~chosen | contact, NO_CONSENT),
            "offer": offer.astype(object).where(offer.notna(), None),
            "lift_measured_on": measured_on,
            "churn_risk_pct": (targets["p_churn"].astype(float) * 100).round().astype(np.int64),
            "risk_decile": targets["risk_decile"].astype(np.int64),
            "risk_decile_meaning": [risk_decile_text(int(d), risk_deciles) for d in targets["risk_decile"]],
            "segment": targets["segment"].astype(str),
            "extra_return_chance_pct": _rounded(targets["uplift_return"] * 100, 1, contact),
            "expected_profit_eur": _rounded(targets["expected_profit"], 2, contact),
            "predicted_value_eur": _rounded(targets["predicted_value"], 2),
            "reasons": reasons,
            "recommended_products": [LIST_SEPARATOR.join(p.text for p in row) for row in explained],
            "recommended_product_ids": [" ".join(row) for row in recommended],
            "email": targets["customer_id"].astype(str).map(emails).where(contact & with_email),
        },
        columns=EXPORT_COLUMNS,
    )


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with every text cell that a spreadsheet could run as a formula prefixed by `'`.

    OWASP's CSV-injection rule: a cell starting with = + - @ tab or carriage return is read as a
    formula by Excel, LibreOffice and Google Sheets. Numbers stay numbers (a negative profit is
    not text); only string cells are changed.
    """
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            risky = [isinstance(v, str) and v.startswith(FORMULA_PREFIXES) for v in out[column]]
            if any(risky):
                out.loc[risky, column] = "'" + out.loc[risky, column].astype(str)
    return out


def export_csv(frame: pd.DataFrame, target: str | IO[str] | Any | None = None) -> str | None:
    """Write an export as CSV with formula-like cells neutralised (`neutralise_formulas`).

    Lines end in CRLF (RFC 4180), so a cell holding a carriage return or a line feed is quoted and
    cannot start a new row (a row split inside a cell would put its rest at the start of a cell).

    Args:
        frame: the export (`export_frame`).
        target: a path or text buffer; None returns the CSV text.
    """
    return neutralise_formulas(frame).to_csv(target, index=False, lineterminator=CSV_LINE_END)


def campaign_overview(engine: Engine, campaign_id: str) -> dict[str, Any]:
    """Counts per arm and the offer mix of a campaign, from its target rows.

    Returns:
        contacts, hold_outs and untreated (rows per arm), and offers: {offer: {"contacts",
        "hold_outs" (held out of the policy's choice of this offer), "expected_profit" (sum over
        the contacts, None when not estimated)}}; campaigns from before offers list their
        contacts under "unspecified".

    Raises:
        CampaignNotFound: no such campaign.
    """
    get_campaign(engine, campaign_id)
    t = CampaignTarget.__table__.c
    with engine.connect() as connection:
        rows = connection.execute(
            select(t.arm, t.offer, t.policy_offer, func.count(), func.sum(t.expected_profit))
            .where(t.campaign_id == campaign_id)
            .group_by(t.arm, t.offer, t.policy_offer)
        ).all()
    arms = {TREATMENT: 0, CONTROL: 0}
    untreated = 0
    offers: dict[str, dict[str, Any]] = {}

    def slot(name: str) -> dict[str, Any]:
        return offers.setdefault(name, {"contacts": 0, "hold_outs": 0, "expected_profit": None})

    for arm, offer, policy_offer, n, profit in rows:
        if arm == TREATMENT:
            arms[TREATMENT] += n
            entry = slot(offer if offer != NO_OFFER else "unspecified")
            entry["contacts"] += n
            if profit is not None:
                entry["expected_profit"] = (entry["expected_profit"] or 0.0) + float(profit)
        elif arm == CONTROL:
            arms[CONTROL] += n
            if policy_offer and policy_offer != NO_OFFER:
                slot(policy_offer)["hold_outs"] += n
        else:
            untreated += n
    return {
        "contacts": arms[TREATMENT],
        "hold_outs": arms[CONTROL],
        "untreated": untreated,
        "offers": dict(sorted(offers.items(), key=lambda kv: (-kv[1]["contacts"], kv[0]))),
    }


def customer_campaigns(engine: Engine, customer_id: str) -> list[dict[str, Any]]:
    """Every campaign a customer was logged in, newest first, with what they got and how they responded.

    Returns:
        One dict per campaign: campaign_id, name, as_of, horizon_days, lift_measured_on, arm,
        offer, p_churn, risk_decile, uplift_return, expected_profit, returned and revenue (None
        until measured).
    """
    t, c = CampaignTarget.__table__.c, Campaign.__table__.c
    with engine.connect() as connection:
        rows = (
            connection.execute(
                select(
                    c.campaign_id,
                    c.name,
                    c.as_of,
                    c.horizon_days,
                    t.arm,
                    t.offer,
                    t.p_churn,
                    t.risk_decile,
                    t.uplift_return,
                    t.expected_profit,
                    t.returned,
                    t.revenue,
                )
                .join(Campaign, Campaign.campaign_id == CampaignTarget.campaign_id)
                .where(t.customer_id == customer_id)
                .order_by(c.as_of.desc(), c.campaign_id)
            )
            .mappings()
            .all()
        )
    return [
        {
            **dict(row),
            "offer": row["offer"] if row["arm"] == TREATMENT and row["offer"] != NO_OFFER else None,
            "lift_measured_on": (pd.Timestamp(row["as_of"]) + pd.Timedelta(days=row["horizon_days"])).date(),
        }
        for row in rows
    ]
