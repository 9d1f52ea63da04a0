"""A registered student as an MLflow pyfunc model: ``mlflow.pyfunc.load_model`` serves it with the
project's own loading code, which travels inside the MLflow model (``code/kd_tasks``), so a service
needs torch, transformers, pyarrow and pandas, not this project installed.

Input: a DataFrame with the use case's input columns (a title, a query and a product title, or the
feature columns); output: a DataFrame of the student's logits, one column per output.
"""
from __future__ import annotations

import mlflow.pyfunc


class StudentModel(mlflow.pyfunc.PythonModel):
    def __init__(self, columns: list[str], outputs: list[str]):
        self.columns, self.outputs = list(columns), list(outputs)
        self.student = None
        self.family = ""

    # no type hints on load_context / predict: MLflow reads them as a schema (the signature is given)
    def load_context(self, context):
        from kd_tasks.models import load_student
        from kd_tasks.models.base import read_config

        directory = context.artifacts["student"]
        self.family = read_config(directory).get("family", "hashed_ngram_mlp")
        self.student = load_student(directory)

    def predict(self, context, model_input, params=None):
        import pandas as pd
        import pyarrow as pa

        from kd_tasks.models import read_inputs

        missing = [c for c in self.columns if c not in model_input.columns]
        if missing:
            raise ValueError(f"the model reads the columns {self.columns}; the input lacks {missing}")
        table = pa.Table.from_pandas(model_input[self.columns], preserve_index=False)
        logits = self.student.logits(read_inputs(self.family, table, self.columns))
        return pd.DataFrame(logits.reshape(len(model_input), -1), columns=self.outputs)
