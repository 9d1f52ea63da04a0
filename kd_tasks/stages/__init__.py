"""The nightly stages, one file each, in the order a night runs them: ``extract`` -> ``soft_labels``
-> ``distill`` (reading the training ``window``) -> ``evaluate`` -> ``gate`` -> registry (promote,
candidate or hold) -> ``report``; ``bootstrap`` trains a teacher and ``export`` packages a promoted
student. A stage reads the use case's declaration and asks its task and model families what to do.
"""
