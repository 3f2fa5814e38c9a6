"""Shop simulator: a realistic, deterministic e-commerce shop to run the platform on."""

from pipelines.simulate.days import DayBatch, simulate_days
from pipelines.simulate.run import SimulationResult, simulate, simulate_interval
from pipelines.simulate.world import World, build_world

__all__ = [
    "DayBatch",
    "SimulationResult",
    "World",
    "build_world",
    "simulate",
    "simulate_days",
    "simulate_interval",
]
