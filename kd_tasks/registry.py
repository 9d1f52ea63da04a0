"""The model registry: immutable versions, a ``production`` alias, an append-only promotion log.

Layout::

    registry/<use_case>/versions/<version>/   student files + manifest.json
    registry/<use_case>/aliases/production.json   {"version": ..., "promoted_at": ...}
    registry/<use_case>/promotions.jsonl          one line per promotion attempt

The alias moves by compare-and-swap under a file lock: a promotion names the champion it expects to
replace, and if another run moved the alias first, the promotion is reported as lost, not applied.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator

from .config import kd_home

ALIAS = "production"


class PromotionConflict(RuntimeError):
    """The alias moved since the run read it: another promotion won the race."""


def registry_dir(use_case: str, home: Path | None = None) -> Path:
    return (home or kd_home()) / "registry" / use_case


def alias_path(use_case: str, home: Path | None = None, alias: str = ALIAS) -> Path:
    return registry_dir(use_case, home) / "aliases" / f"{alias}.json"


def champion(use_case: str, home: Path | None = None) -> dict[str, Any] | None:
    """``{"version", "path", "manifest"}`` of the production model, or None before the first promotion."""
    path = alias_path(use_case, home)
    if not path.exists():
        return None
    alias = json.loads(path.read_text())
    vdir = registry_dir(use_case, home) / "versions" / alias["version"]
    manifest = json.loads((vdir / "manifest.json").read_text())
    return {"version": alias["version"], "path": str(vdir), "manifest": manifest}


@contextlib.contextmanager
def _locked(use_case: str, home: Path | None) -> Iterator[None]:
    rdir = registry_dir(use_case, home)
    rdir.mkdir(parents=True, exist_ok=True)
    with open(rdir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _append_log(use_case: str, home: Path | None, entry: dict[str, Any]) -> None:
    with open(registry_dir(use_case, home) / "promotions.jsonl", "a") as fh:
        fh.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _register(use_case: str, model_dir: str | Path, version: str, manifest: dict[str, Any],
              home: Path | None) -> Path:
    """Copy a model into ``versions/<version>`` (immutable: an existing version is kept as it is)."""
    vdir = registry_dir(use_case, home) / "versions" / version
    if not vdir.exists():
        vdir.parent.mkdir(parents=True, exist_ok=True)
        tmp = vdir.parent / f".{version}.tmp-{uuid.uuid4().hex}"
        try:
            shutil.copytree(model_dir, tmp)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
            os.replace(tmp, vdir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return vdir


def _entry(use_case: str, version: str, manifest: dict[str, Any], reason: str, **extra: Any) -> dict[str, Any]:
    return {"at": dt.datetime.now(dt.timezone.utc).isoformat(), "use_case": use_case, "version": version,
            "reason": reason, "run_id": manifest.get("run_id"), "ds": manifest.get("ds"), **extra}


def promote(use_case: str, model_dir: str | Path, version: str, manifest: dict[str, Any],
            expected_champion: str | None, home: Path | None = None, reason: str = "gate passed") -> dict[str, Any]:
    """Copy ``model_dir`` into ``versions/<version>`` and point the alias at it (compare-and-swap).

    ``expected_champion`` is the version the run evaluated against (None when there was none). If the
    alias no longer points there, nothing moves and ``PromotionConflict`` is raised after logging.
    """
    with _locked(use_case, home):
        vdir = _register(use_case, model_dir, version, manifest, home)
        current = champion(use_case, home)
        current_version = current["version"] if current else None
        entry = _entry(use_case, version, manifest, reason, previous=current_version,
                       expected_previous=expected_champion)
        if current_version != expected_champion:
            _append_log(use_case, home, {**entry, "outcome": "lost_race"})
            raise PromotionConflict(
                f"{use_case}: production moved to {current_version} while this run evaluated against "
                f"{expected_champion}; version {version} is kept in the registry but not promoted. "
                "Re-run the evaluation against the new champion"
            )
        _write_alias(use_case, home, {"version": version, "promoted_at": entry["at"], "previous": current_version})
        _append_log(use_case, home, {**entry, "outcome": "promoted"})
    return {"version": version, "path": str(vdir), "previous": current_version}


def record_candidate(use_case: str, model_dir: str | Path, version: str, manifest: dict[str, Any],
                     home: Path | None = None, reason: str = "candidate") -> dict[str, Any]:
    """Keep a model in the registry and log it as a candidate; the alias does not move."""
    with _locked(use_case, home):
        vdir = _register(use_case, model_dir, version, manifest, home)
        current = champion(use_case, home)
        _append_log(use_case, home, _entry(use_case, version, manifest, reason, outcome="candidate",
                                           previous=current["version"] if current else None,
                                           gate=manifest.get("gate")))
    return {"version": version, "path": str(vdir), "champion": current["version"] if current else None}


def rollback(use_case: str, version: str, reason: str, home: Path | None = None) -> dict[str, Any]:
    """Point ``production`` at an earlier registered version (logged as a manual promotion)."""
    with _locked(use_case, home):
        vdir = registry_dir(use_case, home) / "versions" / version
        if not (vdir / "manifest.json").exists():
            known = sorted(p.name for p in (registry_dir(use_case, home) / "versions").glob("*") if p.is_dir())
            raise ValueError(f"{use_case} has no registered version {version!r}; known versions: {known}")
        current = champion(use_case, home)
        previous = current["version"] if current else None
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        _write_alias(use_case, home, {"version": version, "promoted_at": now, "previous": previous})
        _append_log(use_case, home, {"at": now, "use_case": use_case, "version": version, "previous": previous,
                                     "reason": reason, "outcome": "rolled_back"})
    return {"version": version, "previous": previous}


def _write_alias(use_case: str, home: Path | None, payload: dict[str, Any]) -> None:
    alias = alias_path(use_case, home)
    alias.parent.mkdir(parents=True, exist_ok=True)
    tmp = alias.parent / f".{alias.name}.tmp-{uuid.uuid4().hex}"
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, alias)  # atomic: readers see the old alias or the new one


def promotion_log(use_case: str, home: Path | None = None) -> list[dict[str, Any]]:
    path = registry_dir(use_case, home) / "promotions.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
