"""Task logic that the Airflow DAGs, DVC stages and the `retention` CLI call, one module per stage."""
