"""Shop simulator: a realistic, deterministic e-commerce shop to run the platform on."""

from pipelines.simulate.days import DayBatch, simulate_days
from pipelines.simulate.response import CampaignResponses, apply_campaigns, true_effects
from pipelines.simulate.run import (
    SimulationResult,
    contact_day,
    load_shop,
    read_effects,
    simulate,
    simulate_interval,
    write_effects,
)
from pipelines.simulate.world import World, build_world

__all__ = [
    "CampaignResponses",
    "DayBatch",
    "SimulationResult",
    "World",
    "apply_campaigns",
    "build_world",
    "contact_day",
    "load_shop",
    "read_effects",
    "simulate",
    "simulate_days",
    "simulate_interval",
    "true_effects",
    "write_effects",
]
