"""Nightly knowledge distillation stages. Plain library: never imports airflow."""
