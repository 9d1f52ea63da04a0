"""Use cases: one declaration per file in this folder (a module-level ``USE_CASE``), found by name.

A new use case is a file here, its SQL under ``sql/<name>/``, a DAG file that calls
``kd_common.nightly_tasks`` with its name, and a loader for its data if none fits.
"""
from __future__ import annotations

import importlib
import pkgutil

from ..config import UseCase
from ..names import ConfigError


def _declared() -> dict[str, UseCase]:
    found: dict[str, UseCase] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        use_case = getattr(importlib.import_module(f"{__name__}.{info.name}"), "USE_CASE", None)
        if not isinstance(use_case, UseCase):
            raise TypeError(f"{__name__}.{info.name} declares no USE_CASE (a kd_tasks.config.UseCase)")
        if use_case.name != info.name:
            raise ValueError(f"{__name__}.{info.name} declares use case {use_case.name!r}: name the file after it")
        found[use_case.name] = use_case
    return found


USE_CASES: dict[str, UseCase] = _declared()


def get_use_case(name: str) -> UseCase:
    if name not in USE_CASES:
        raise ConfigError(f"unknown use case {name!r}; known: {sorted(USE_CASES)}")
    return USE_CASES[name]
