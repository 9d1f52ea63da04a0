"""The model registry: immutable versions, a ``production`` alias, an append-only promotion log.

Layout::

    registry/<use_case>/versions/<version>/       student files + manifest.json + _kd_files.json
    registry/<use_case>/aliases/production.json   {"version", "promoted_at", "previous", "intent_id"}
    registry/<use_case>/promotions.jsonl          one line per event: intent, promoted, lost_race, ...

The alias moves by compare-and-swap under a file lock: a promotion names the champion it expects to
replace, and if another run moved the alias first, the promotion is reported as lost, not applied.

Every move is logged twice: an ``intent`` line (fsynced) before the alias moves, then its outcome.
Whoever takes the lock next completes a dangling intent: ``promoted`` (or ``rolled_back``) if the
alias carries its id, ``intent_aborted`` if not. So a crash at any point leaves a log that names every
move of the alias, and a retried promotion finds its version in production and reports it as promoted.
A torn last line of the log is dropped; a damaged alias is rewritten from the log's last move.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator

from .. import names
from ..home import kd_home
from . import files

log = logging.getLogger(__name__)

ALIAS = "production"
VERSION_MANIFEST = "manifest.json"
MOVES = ("promoted", "rolled_back")


class PromotionConflict(RuntimeError):
    """The alias moved since the run read it: another promotion won the race."""


def registry_dir(use_case: str, home: Path | None = None) -> Path:
    return names.child((home or kd_home()) / "registry", names.use_case_name(use_case))


def version_dir(use_case: str, version: str, home: Path | None = None) -> Path:
    """``versions/<version>``; the version must be a content hash (no path can be smuggled in)."""
    return names.child(registry_dir(use_case, home) / "versions", names.version(version))


def export_dir(use_case: str, version: str, home: Path | None = None) -> Path:
    """``exports/<version>``: a version exported for serving (``stages.export``)."""
    return names.child(registry_dir(use_case, home) / "exports", names.version(version))


def alias_path(use_case: str, home: Path | None = None, alias: str = ALIAS) -> Path:
    return registry_dir(use_case, home) / "aliases" / f"{alias}.json"


def log_path(use_case: str, home: Path | None = None) -> Path:
    return registry_dir(use_case, home) / "promotions.jsonl"


def known_versions(use_case: str, home: Path | None = None) -> list[str]:
    vroot = registry_dir(use_case, home) / "versions"
    if not vroot.is_dir():
        return []
    return sorted(p.name for p in vroot.iterdir() if p.is_dir() and _is_version(p.name))


def _is_version(name: str) -> bool:
    try:
        names.version(name)
    except names.InputError:
        return False
    return True


def _rollback_fix(use_case: str, home: Path | None) -> str:
    return (f"point production at a sound version with `python -m kd_tasks.cli rollback --use-case {use_case} "
            f"--version VERSION --reason ...` (registered: {known_versions(use_case, home)})")


def verify_version(use_case: str, version: str, home: Path | None = None) -> Path:
    """The verified directory of a registered version. A version written before manifests is checked
    against its name (the content hash of its student files) and given a manifest."""
    vdir = version_dir(use_case, version, home)
    fix = (f"the registered copy is damaged; restore it from a backup, or {_rollback_fix(use_case, home)}"
           if vdir.is_dir() else f"{use_case} has no registered version {version}; {_rollback_fix(use_case, home)}")
    if not vdir.is_dir():
        raise files.IntegrityError(f"model version directory {vdir} does not exist; {fix}")
    if files.has_manifest(vdir):
        files.verify(vdir, "model version file", fix)
    else:
        check_model_dir(vdir, version, fix)
        files.read_json(vdir / VERSION_MANIFEST, "model manifest", fix)
        files.write_manifest(vdir)
        log.info("verified %s (written before manifests) and gave it a manifest", vdir)
    return vdir


def version_manifest(use_case: str, version: str, home: Path | None = None) -> dict[str, Any]:
    vdir = verify_version(use_case, version, home)
    return files.read_json(vdir / VERSION_MANIFEST, "model manifest", _rollback_fix(use_case, home))


# --------------------------------------------------------------------------- the promotion log


def _read_log(use_case: str, home: Path | None) -> tuple[list[dict[str, Any]], bool]:
    """Entries of the log (lines that do not parse are skipped and reported) and whether its last
    line is torn (no newline: a writer died mid-append)."""
    path = log_path(use_case, home)
    if not path.exists():
        return [], False
    raw = path.read_bytes()
    torn = bool(raw) and not raw.endswith(b"\n")
    entries = []
    lines = raw.split(b"\n")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line.decode("utf-8"))
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except (UnicodeDecodeError, ValueError):
            if not (torn and n == len(lines)):
                log.warning("%s line %d is damaged and was skipped", path, n)
            continue
        entries.append(entry)
    return entries, torn


def promotion_log(use_case: str, home: Path | None = None, intents: bool = False) -> list[dict[str, Any]]:
    """The log's outcomes, oldest first (with ``intents``, the intent lines too); a torn last line or a
    damaged line is left out."""
    return [e for e in _read_log(use_case, home)[0] if intents or e.get("outcome") != "intent"]


def _append_log(use_case: str, home: Path | None, entry: dict[str, Any]) -> None:
    with open(log_path(use_case, home), "ab") as fh:
        fh.write((json.dumps(entry, sort_keys=True, default=str) + "\n").encode())
        fh.flush()
        os.fsync(fh.fileno())


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


# --------------------------------------------------------------------------- the alias


def _read_alias(use_case: str, home: Path | None) -> dict[str, Any] | None:
    """The alias, or None before the first promotion; a damaged one raises ``IntegrityError``."""
    path = alias_path(use_case, home)
    if not path.exists():
        return None
    alias = files.read_json(path, "production alias", _rollback_fix(use_case, home))
    if not isinstance(alias, dict) or not _is_version(alias.get("version")):
        raise files.IntegrityError(f"production alias {path} names no valid version ({alias!r}); "
                                   f"{_rollback_fix(use_case, home)}")
    return alias


def _write_alias(use_case: str, home: Path | None, payload: dict[str, Any]) -> None:
    files.write_json(alias_path(use_case, home), payload, indent=None)


@contextlib.contextmanager
def _locked(use_case: str, home: Path | None, repair: bool = True) -> Iterator[None]:
    """The registry's lock; whoever holds it first finishes what a crashed holder left half done
    (unless ``repair`` is False: the caller repairs, and copes when repairing fails)."""
    rdir = registry_dir(use_case, home)
    rdir.mkdir(parents=True, exist_ok=True)
    with open(rdir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            if repair:
                _repair(use_case, home)
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _repair(use_case: str, home: Path | None) -> None:
    """Under the lock: drop a torn last log line, complete or abort dangling intents, and rewrite a
    damaged alias from the log's last move."""
    path = log_path(use_case, home)
    entries, torn = _read_log(use_case, home)
    if torn:
        raw = path.read_bytes()
        keep = raw[:raw.rfind(b"\n") + 1]
        files.write_bytes(path, keep)
        log.warning("%s: dropped a torn last line of %d bytes (a writer died mid-append)", path, len(raw) - len(keep))
    closed = {e.get("intent_id") for e in entries if e.get("outcome") != "intent"}
    try:
        alias = _read_alias(use_case, home)
    except files.IntegrityError as exc:
        alias = _heal_alias(use_case, home, entries, closed, exc)
    for e in entries:
        if e.get("outcome") != "intent" or e.get("intent_id") in closed:
            continue
        moved = alias is not None and alias.get("intent_id") == e["intent_id"]
        outcome = e.get("move", "promoted") if moved else "intent_aborted"
        _append_log(use_case, home, {**e, "outcome": outcome, "at": _now(), "repaired": True})
        log.warning("%s: completed a move interrupted by a crash: %s %s", use_case, outcome, e.get("version"))


def _heal_alias(use_case: str, home: Path | None, entries: list[dict[str, Any]], closed: set[Any],
                exc: files.IntegrityError) -> dict[str, Any]:
    """Rewrite a damaged alias from the last move in the log, if that version is sound; else re-raise."""
    for e in reversed(entries):
        if e.get("outcome") == "intent" and e.get("intent_id") not in closed:
            break  # a crash mid-move: the alias may or may not have moved, so the log cannot say
        if e.get("outcome") not in MOVES:
            continue
        try:
            verify_version(use_case, e["version"], home)
        except (files.IntegrityError, names.InputError):
            break
        alias = {"version": e["version"], "promoted_at": e.get("at"), "previous": e.get("previous"),
                 "intent_id": e.get("intent_id")}
        _write_alias(use_case, home, alias)
        log.warning("%s; rewrote it from the promotion log's last move: %s", exc, e["version"])
        return alias
    raise exc


def alias_version(use_case: str, home: Path | None = None) -> str | None:
    """The version production points at (None before the first promotion). A damaged alias is
    rewritten from the promotion log when it can be, else ``IntegrityError`` says how to recover."""
    try:
        alias = _read_alias(use_case, home)
    except files.IntegrityError:
        with _locked(use_case, home):  # repairs it, or raises with the fix
            alias = _read_alias(use_case, home)
    return alias["version"] if alias else None


def champion(use_case: str, home: Path | None = None) -> dict[str, Any] | None:
    """``{"version", "path", "manifest"}`` of the verified production model, or None before the first
    promotion. A damaged model raises ``IntegrityError`` naming the file and the recovery."""
    version = alias_version(use_case, home)
    if version is None:
        return None
    manifest = version_manifest(use_case, version, home)
    return {"version": version, "path": str(version_dir(use_case, version, home)), "manifest": manifest}


# --------------------------------------------------------------------------- registering and moving


def _register(use_case: str, model_dir: str | Path, version: str, manifest: dict[str, Any],
              home: Path | None) -> Path:
    """Copy a model into ``versions/<version>`` (immutable: a sound existing version is kept as it is;
    a damaged one is replaced by the same content)."""
    vdir = version_dir(use_case, version, home)
    check_model_dir(model_dir, version)
    if vdir.exists():
        try:
            return verify_version(use_case, version, home)
        except files.IntegrityError as exc:
            log.warning("%s; registering it again from %s", exc, model_dir)

    def build(tmp: Path) -> None:
        shutil.copytree(model_dir, tmp, ignore=shutil.ignore_patterns(".*", files.FILES_MANIFEST), dirs_exist_ok=True)
        files.fault_point("version_copied")
        files.write_json(tmp / VERSION_MANIFEST, manifest)
        files.write_manifest(tmp)

    files.publish_dir(vdir, build)
    return vdir


def check_model_dir(model_dir: str | Path, version: str,
                    fix: str = "clear the distill_student task of this run to retrain") -> Path:
    """A model's folder must still hash to its version (its name): a changed file is never registered
    or trusted."""
    model_dir = Path(model_dir)
    actual = files.content_version(model_dir, exclude=(VERSION_MANIFEST,))
    if actual != version:
        raise files.IntegrityError(f"model files in {model_dir} hash to {actual}, not to version {version}: they "
                                   f"changed after training; {fix}")
    return model_dir


def _entry(use_case: str, version: str, manifest: dict[str, Any], reason: str, **extra: Any) -> dict[str, Any]:
    return {"at": _now(), "use_case": use_case, "version": version,
            "reason": reason, "run_id": manifest.get("run_id"), "ds": manifest.get("ds"), **extra}


def _move(use_case: str, home: Path | None, entry: dict[str, Any], move: str) -> None:
    """Log the intent, move the alias, log the outcome: a crash anywhere is completed by ``_repair``."""
    intent_id = uuid.uuid4().hex
    _append_log(use_case, home, {**entry, "outcome": "intent", "move": move, "intent_id": intent_id})
    files.fault_point("intent_logged")
    _write_alias(use_case, home, {"version": entry["version"], "promoted_at": entry["at"],
                                  "previous": entry["previous"], "intent_id": intent_id})
    files.fault_point("alias_moved")
    _append_log(use_case, home, {**entry, "outcome": move, "intent_id": intent_id})


def promote(use_case: str, model_dir: str | Path, version: str, manifest: dict[str, Any],
            expected_champion: str | None, home: Path | None = None, reason: str = "gate passed") -> dict[str, Any]:
    """Copy ``model_dir`` into ``versions/<version>`` and point the alias at it (compare-and-swap).

    ``expected_champion`` is the version the run evaluated against (None when there was none). If the
    alias already points at ``version`` (a retry, or a rerun with the same inputs) nothing moves and the
    result says ``already``. If it points elsewhere than expected, nothing moves and
    ``PromotionConflict`` is raised after logging.
    """
    with _locked(use_case, home):
        vdir = _register(use_case, model_dir, version, manifest, home)
        alias = _read_alias(use_case, home)
        current = alias["version"] if alias else None
        if current == version:
            log.info("%s: version %s is already in production; nothing to move", use_case, version)
            return {"version": version, "path": str(vdir), "previous": alias.get("previous"), "already": True}
        entry = _entry(use_case, version, manifest, reason, previous=current, expected_previous=expected_champion)
        if current != expected_champion:
            _append_log(use_case, home, {**entry, "outcome": "lost_race"})
            raise PromotionConflict(
                f"{use_case}: production moved to {current} while this run evaluated against "
                f"{expected_champion}; version {version} is kept in the registry but not promoted. "
                "Re-run the evaluation against the new champion"
            )
        _move(use_case, home, entry, "promoted")
    return {"version": version, "path": str(vdir), "previous": current, "already": False}


def record_candidate(use_case: str, model_dir: str | Path, version: str, manifest: dict[str, Any],
                     home: Path | None = None, reason: str = "candidate") -> dict[str, Any]:
    """Keep a model in the registry and log it as a candidate (once per run); the alias does not move."""
    with _locked(use_case, home):
        vdir = _register(use_case, model_dir, version, manifest, home)
        alias = _read_alias(use_case, home)
        current = alias["version"] if alias else None
        logged = any(e.get("outcome") == "candidate" and e.get("version") == version
                     and e.get("run_id") == manifest.get("run_id") for e in promotion_log(use_case, home))
        if not logged:
            _append_log(use_case, home, _entry(use_case, version, manifest, reason, outcome="candidate",
                                               previous=current, gate=manifest.get("gate")))
    return {"version": version, "path": str(vdir), "champion": current}


def rollback(use_case: str, version: str, reason: str, home: Path | None = None) -> dict[str, Any]:
    """Point ``production`` at an earlier registered, verified version (logged as a manual move).
    Works when the alias or the log is damaged: that is when it is needed."""
    names.version(version)  # before the lock creates any folder
    with _locked(use_case, home, repair=False):
        try:
            _repair(use_case, home)
            alias = _read_alias(use_case, home)
            previous = alias["version"] if alias else None
        except files.IntegrityError as exc:
            log.warning("%s; rolling back over it", exc)
            previous = None
        if not version_dir(use_case, version, home).is_dir():
            raise names.InputError(f"{use_case} has no registered version {version!r}; "
                                   f"known versions: {known_versions(use_case, home)}")
        verify_version(use_case, version, home)
        entry = {"at": _now(), "use_case": use_case, "version": version, "previous": previous, "reason": reason}
        _move(use_case, home, entry, "rolled_back")
    return {"version": version, "previous": previous}


def night_champion(use_case: str, ds: str, home: Path | None = None, run_id: str | None = None) -> str | None:
    """The production version as of the first run for ``(use_case, ds)``: what every run of that night
    warm-starts from, so a rerun with the same inputs trains the same student. Recorded on first call
    in ``registry/<use_case>/nights/ds=<ds>.json``."""
    path = registry_dir(use_case, home) / "nights" / f"ds={names.ds(ds)}.json"
    with _locked(use_case, home):
        try:
            recorded = files.read_json(path, "night record", "") if path.exists() else None
        except files.IntegrityError as exc:
            log.warning("%s; recording the current champion again", str(exc).rstrip("; "))
            recorded = None
        if isinstance(recorded, dict) and (recorded.get("champion") is None or _is_version(recorded.get("champion"))):
            return recorded.get("champion")
        alias = _read_alias(use_case, home)
        version = alias["version"] if alias else None
        files.write_json(path, {"use_case": use_case, "ds": ds, "champion": version, "recorded_at": _now(),
                                "run_id": run_id})
    return version
