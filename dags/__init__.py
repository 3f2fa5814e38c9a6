"""Airflow DAG files: wiring only; every task body is one call into `pipelines`."""
