"""Monitoring of the champion return model: feature and prediction drift, realised quality, retraining.

- `drift`: pure statistics (PSI on reference-quantile bins, `scipy.stats.ks_2samp`, chi-square);
- `quality`: realised ROC-AUC / Brier of past campaign predictions once their labels have matured;
- `store`: the `platform_monitoring` rows; `run`: one run (`monitor`, `task_monitor` for the DAG).

Evidently (0.7) was considered: its DataDriftPreset computes the same per-column tests and renders
reports. It is not used here because it is not in requirements.lock, and adding it (with its own
pins of pandas, numpy, scipy, plotly and pydantic) is a lock change to be approved and
co-resolved with the stack first; the statistics it would add are a few lines on scipy and
numpy, which are locked, and the results must land in our own table, MLflow and web page anyway.
"""

from pipelines.monitoring.drift import FeatureDrift, feature_drift, prediction_drift, psi
from pipelines.monitoring.run import MonitoringResult, monitor, population_drift, task_monitor

__all__ = [
    "FeatureDrift",
    "MonitoringResult",
    "feature_drift",
    "monitor",
    "population_drift",
    "prediction_drift",
    "psi",
    "task_monitor",
]
