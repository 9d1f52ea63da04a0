"""Where the pipeline keeps things under KD_HOME, each behind one module that writes and reads it:
``files`` (atomic writes, manifests, versions), ``lake`` (date-partitioned Parquet), ``teachers``
(teacher directories), ``registry`` (model versions, the production alias, the promotion log) and
``runs`` (a run's directory of JSON facts). Nothing here knows a use case's columns or a model's code.
"""
