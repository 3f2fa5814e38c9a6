"""Model training: Lightning return/churn model and recommender, baselines, MLflow tracking.

Filled by the models issue; it trains on the feature store's point-in-time training sets.
"""
