"""Model training: the model families (`training.families`), their models and baselines, the
offline protocol, MLflow tracking, the registry and the promotion gate."""
