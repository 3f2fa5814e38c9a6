"""A short report of what the shop's source tables hold, printed by the main job."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, func, select, text

TABLES = ("customers", "products", "events", "orders", "reviews")


@dataclass(frozen=True)
class ShopSummary:
    """Sizes and behaviour figures of the stored shop."""

    rows: dict[str, int]
    first_event: str | None
    last_event: str | None
    events_by_type: dict[str, int]
    buyers: int
    repeat_buyers: int
    consenting_customers: int

    def metrics(self) -> dict[str, float | int]:
        """Flat numeric figures (DVC metrics, comparisons between shops)."""
        views = self.events_by_type.get("view", 0)
        carts = self.events_by_type.get("cart", 0)
        return {
            **{f"rows_{table}": n for table, n in self.rows.items()},
            **{f"events_{kind}": n for kind, n in sorted(self.events_by_type.items())},
            "cart_per_view": round(carts / views, 4) if views else 0.0,
            "purchase_per_cart": round(self.events_by_type.get("purchase", 0) / carts, 4) if carts else 0.0,
            "repeat_buyer_share": round(self.repeat_buyers / self.buyers, 4) if self.buyers else 0.0,
            "consent_share": round(self.consenting_customers / max(self.rows.get("customers", 0), 1), 4),
        }

    def render(self) -> str:
        """Human-readable lines."""
        views = self.events_by_type.get("view", 0)
        carts = self.events_by_type.get("cart", 0)
        purchases = self.events_by_type.get("purchase", 0)
        lines = [
            "shop summary",
            "  rows: " + ", ".join(f"{t} {n:,}" for t, n in self.rows.items()),
            f"  events from {self.first_event} to {self.last_event}",
            f"  events by type: views {views:,}, carts {carts:,}, purchases {purchases:,}",
        ]
        if views:
            lines.append(
                f"  funnel: cart/view {carts / views:.1%}, purchase/cart {purchases / max(carts, 1):.1%}"
            )
        if self.buyers:
            lines.append(
                f"  buyers {self.buyers:,}, of whom {self.repeat_buyers / self.buyers:.1%} ordered more than once"
            )
        total = max(self.rows.get("customers", 0), 1)
        lines.append(f"  marketing consent: {self.consenting_customers / total:.1%} of customers")
        return "\n".join(lines)


def shop_summary(engine: Engine) -> ShopSummary:
    """Compute the summary with a few aggregate queries."""
    with engine.connect() as connection:
        rows = {t: connection.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}
        first, last = connection.execute(text("SELECT min(ts), max(ts) FROM events")).one()
        by_type: dict[str, int] = dict(
            connection.execute(text("SELECT event_type, count(*) FROM events GROUP BY event_type")).all()
        )
        buyers, repeat = connection.execute(
            text(
                "SELECT count(*), coalesce(sum(CASE WHEN n > 1 THEN 1 ELSE 0 END), 0) FROM "
                "(SELECT customer_id, count(DISTINCT coalesce(order_id, CAST(ts AS VARCHAR(32)))) AS n "
                "FROM events WHERE event_type = 'purchase' GROUP BY customer_id) AS b"
            )
        ).one()
        consent = connection.execute(
            text("SELECT count(*) FROM customers WHERE marketing_consent")
        ).scalar_one()
    return ShopSummary(
        rows=rows,
        first_event=str(first) if first else None,
        last_event=str(last) if last else None,
        events_by_type={str(k): int(v) for k, v in by_type.items()},
        buyers=int(buyers),
        repeat_buyers=int(repeat),
        consenting_customers=int(consent),
    )


def warehouse_counts(engine: Engine) -> dict[str, int]:
    """Rows of each validated warehouse table (`wh_<table>`), e.g. {"wh_events": 85507, ...}."""
    from retention.db.warehouse import WAREHOUSE

    with engine.connect() as connection:
        return {
            table.name: int(connection.execute(select(func.count()).select_from(table)).scalar_one())
            for table in WAREHOUSE.values()
        }
