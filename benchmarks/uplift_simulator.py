"""Benchmark: targeting on the simulated shop, scored against the simulator's true effects.

The main job's weekly loop (simulate -> extract -> measure -> train uplift -> campaign) runs in a
fresh home (or `--home` reuses one): its campaigns log every eligible customer, and once the
uplift model is champion they are chosen by it. For each campaign the uplift policy chose, the
simulator's closed-form potential outcomes (pipelines/simulate/response.py: P(return within the
horizon | offer) and expected revenue, for every offer and no contact) score four policies on
the same eligible customers at an equal budget of K contacts, K = the contacts the learned
policy made:

- learned: the campaign's own choices (the uplift policy: best expected incremental profit);
- learned by returns: the same champion model, ranking by its predicted incremental return;
- oracle: the K customers with the largest true incremental return, each with their best offer;
- risk: `campaign.default_offer` to the K customers with the largest value at stake (today's rule);
- random: K random customers, each with a random offer they may get (its expectation).

Each policy's true incremental returns = the sum over its contacts of P(return | offer) -
P(return | no contact); its true incremental profit = revenue uplift x margin - offer cost. The
issue's targets: learned >= 70% of the oracle's incremental returns and >= 1.5x the risk
policy's. Because the learned policy often contacts most of the eligible customers (where every
policy nears the oracle), the same comparison is also made at 30% of the eligible customers, with
the model ranking by its predicted incremental return. Results go to benchmarks/results/uplift_simulator.json (quoted in README.md).

Usage: python benchmarks/uplift_simulator.py [--home DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "uplift_simulator.json"
TIGHT_SHARE = 0.3  # a second budget: 30% of the eligible (the learned campaign's own K is often most)
sys.path.insert(0, str(ROOT))


def run_main_job(home: Path, customers: int | None) -> float:
    """The main job on the embedded defaults (optionally more customers) in `home`; returns its seconds."""
    import yaml

    from pipelines.main_job import run_main_job as main_job
    from retention.params import load_params
    from retention.settings import DEFAULT_PARAMS, Settings

    home.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load(Path(DEFAULT_PARAMS).read_text())
    if customers:
        raw["simulate"]["customers"] = customers
    params_path = home / "params.yaml"
    params_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    os.environ["RETENTION_HOME"] = str(home)
    os.environ["RETENTION_PARAMS"] = str(params_path)
    for key in ("RETENTION_DATABASE_URL", "MLFLOW_TRACKING_URI", "AIRFLOW_HOME"):
        os.environ.pop(key, None)
    started = time.perf_counter()
    main_job(Settings.from_env(), load_params(params_path), "simulated", None, print)
    return time.perf_counter() - started


def true_table(effects: pd.DataFrame, offers: list[str], margin: float, costs: dict) -> pd.DataFrame:
    """Per customer and offer: true incremental return and profit vs no contact."""
    wide = effects.pivot_table(index="customer_id", columns="offer", values=["p_return", "revenue"])
    rows = {}
    for offer in offers:
        spend = wide[("revenue", offer)]
        rows[("returns", offer)] = wide[("p_return", offer)] - wide[("p_return", "none")]
        rows[("profit", offer)] = (spend - wide[("revenue", "none")]) * margin - costs[offer].cost(spend)
    return pd.DataFrame(rows)


def score_campaign(
    targets: pd.DataFrame,
    truth: pd.DataFrame,
    params,  # noqa: ANN001
    predicted: pd.DataFrame,
    share: float | None = None,
) -> dict:
    """The policies' true incremental returns and profit at the learned policy's K contacts."""
    from pipelines.campaigns.select import offer_eligibility

    offers = list(params.offers)
    rows = targets.set_index("customer_id").loc[truth.index]
    allowed = offer_eligibility(rows.reset_index(), params).set_index(rows.index)
    gain = truth["returns"].where(allowed.to_numpy())
    profit = truth["profit"].where(allowed.to_numpy())
    learned = rows["policy_offer"]
    contacts = learned[learned != "none"]
    k = len(contacts) if share is None else int(share * len(rows))

    def total(chosen: pd.Series) -> dict[str, float]:
        picked = chosen[chosen != "none"]
        idx = [truth.index.get_loc(c) for c in picked.index]
        cols = [offers.index(o) for o in picked]
        return {
            "contacts": len(picked),
            "incremental_returns": float(truth["returns"].to_numpy()[idx, cols].sum()),
            "incremental_profit": float(truth["profit"].to_numpy()[idx, cols].sum()),
        }

    # the same model ranking by its predicted incremental return (what the returns target measures)
    guess = pd.DataFrame(
        {o: predicted[f"uplift_return_{o}"].to_numpy() for o in offers}, index=rows.index
    ).where(allowed.to_numpy())
    by_returns = guess.idxmax(axis=1).loc[guess.max(axis=1).sort_values(ascending=False).index[:k]]
    best_offer = gain.idxmax(axis=1)
    oracle = best_offer.loc[gain.max(axis=1).sort_values(ascending=False).index[:k]]
    stake = (rows["p_churn"] * rows["predicted_value"]).sort_values(ascending=False)
    default = params.default_offer
    risk = pd.Series(default, index=stake.index[allowed.loc[stake.index, default].to_numpy()][:k])
    mean_gain = gain.mean(axis=1, skipna=True)
    mean_profit = profit.mean(axis=1, skipna=True)
    result = {
        "eligible": int(len(rows)),
        "learned": total(contacts),
        "learned_by_returns": total(by_returns),
        "oracle": total(oracle),
        "oracle_by_profit": total(
            profit.idxmax(axis=1).loc[profit.max(axis=1).sort_values(ascending=False).index[:k]]
        ),
        "risk": total(risk),
        "random": {
            "contacts": k,
            "incremental_returns": float(mean_gain.mean() * k),
            "incremental_profit": float(mean_profit.mean() * k),
        },
    }
    return result


def evaluate(home: Path) -> dict:
    """Score every uplift-policy campaign of the home's platform against the truth."""
    from pipelines.campaigns.store import campaign_targets, list_campaigns
    from pipelines.simulate.response import campaign_effects
    from pipelines.simulate.run import contact_day, load_shop
    from retention.db import create_db_engine
    from retention.params import load_params
    from retention.settings import Settings
    from training.registry import load_native

    env = {"RETENTION_HOME": str(home)}
    if (home / "params.yaml").exists():
        env["RETENTION_PARAMS"] = str(home / "params.yaml")
    settings = Settings.from_env(env)
    params = load_params(settings.params_path)
    engine = create_db_engine(settings.database_url)
    shop = load_shop(engine, settings.simulator_dir)
    campaigns = list_campaigns(engine)
    scored, tight = {}, {}
    for campaign in sorted(campaigns, key=lambda c: c["as_of"]):
        if campaign["policy"] != "uplift":
            continue
        targets = campaign_targets(engine, campaign["campaign_id"])
        version = campaign["model_versions"]["retention-uplift"]
        model = load_native(settings.mlflow_tracking_uri, "retention-uplift", version)
        indexed = targets.set_index("customer_id")
        request = targets[["customer_id"]].assign(
            campaign_id=campaign["campaign_id"],
            day=contact_day(params.simulate, campaign["as_of"]),
            horizon_days=campaign["horizon_days"],
        )
        effects = campaign_effects(shop, request)
        truth = true_table(
            effects, list(params.campaign.offers), params.campaign.margin, params.campaign.offers
        )
        rows = indexed.loc[truth.index].reset_index()
        predicted = model.predict_offers(rows)
        scored[campaign["campaign_id"]] = score_campaign(targets, truth, params.campaign, predicted)
        tight[campaign["campaign_id"]] = score_campaign(
            targets, truth, params.campaign, predicted, TIGHT_SHARE
        )
    engine.dispose()
    policies = ("learned", "learned_by_returns", "oracle", "risk", "random")
    summary = {}
    if scored:
        for policy in policies:
            summary[policy] = {
                key: float(np.mean([c[policy][key] for c in scored.values()]))
                for key in ("incremental_returns", "incremental_profit", "contacts")
            }
        learned = summary["learned"]["incremental_returns"]
        summary["learned_share_of_oracle"] = learned / summary["oracle"]["incremental_returns"]
        summary["learned_over_risk"] = learned / summary["risk"]["incremental_returns"]
        by_returns = summary["learned_by_returns"]["incremental_returns"]
        summary["learned_by_returns_share_of_oracle"] = by_returns / summary["oracle"]["incremental_returns"]
        summary["learned_by_returns_over_risk"] = by_returns / summary["risk"]["incremental_returns"]
    at_share = (
        {
            policy: float(np.mean([c[policy]["incremental_returns"] for c in tight.values()]))
            for policy in ("learned_by_returns", "oracle", "risk", "random")
        }
        if tight
        else {}
    )
    return {
        "campaigns": scored,
        "mean_over_campaigns": summary,
        f"at_{int(TIGHT_SHARE * 100)}_percent_of_eligible": at_share,
        "all_campaigns": [
            {"campaign_id": c["campaign_id"], "policy": c["policy"], "lift": (c["lift"] or {}).get("lift")}
            for c in campaigns
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, help="a home the main job already ran in (default: run it)")
    parser.add_argument("--customers", type=int, help="simulate.customers of the run (default: params.yaml)")
    args = parser.parse_args()
    seconds = None
    home = args.home
    if home is None:
        home = Path(tempfile.mkdtemp(prefix="uplift-bench-"))
        seconds = run_main_job(home, args.customers)
    result = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "home": str(home),
        "customers": args.customers,
        "main_job_seconds": seconds,
        **evaluate(home),
        "targets": {"learned_share_of_oracle": 0.7, "learned_over_risk": 1.5},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result["mean_over_campaigns"], indent=2))
    print(json.dumps(result[f"at_{int(TIGHT_SHARE * 100)}_percent_of_eligible"], indent=2))


if __name__ == "__main__":
    main()
