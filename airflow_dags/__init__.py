"""Airflow DAGs (orchestration work): definitions only, no heavy imports at parse time."""
