"""Return / churn: a survival network over features and event sequences, and its baselines."""

from training.churn.baselines import FrequencyBaseline, RecencyBaseline, RfmBoostingBaseline
from training.churn.fit import ReturnModel, ReturnModelError

__all__ = ["FrequencyBaseline", "RecencyBaseline", "ReturnModel", "ReturnModelError", "RfmBoostingBaseline"]
