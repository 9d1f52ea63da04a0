"""Nightly knowledge distillation as a plain library (never imports Airflow): use cases declared in
``use_cases/``, model families in ``models/``, stages in ``stages/``, KD_HOME behind ``storage/``."""
