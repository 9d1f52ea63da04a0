"""The model registry: immutable versions, a ``production`` alias, an append-only promotion log.

Layout::

    registry/<use_case>/versions/<version>/       student files + manifest.json + _kd_files.json
    registry/<use_case>/aliases/production.json   {"version", "promoted_at", "previous", "intent_id"}
    registry/<use_case>/promotions.jsonl          one line per event: intent, promoted, lost_race, ...
                                                  (object store: promotions/<time>-<id>-<event>.json)

The alias moves by compare-and-swap: a promotion names the champion it expects to replace, and if
another run moved the alias first, the promotion is reported as lost, not applied. On a local home the
swap runs under a file lock (``flock``); on an object store there is no lock: the alias is written with
a conditional PUT (``If-Match`` on the ETag it was read with, ``If-None-Match: *`` for the first
promotion), so of N concurrent promotions exactly one write succeeds.

Every move is logged twice: an ``intent`` entry before the alias moves, then its outcome. A dangling
intent is completed by the next writer: ``promoted`` (or ``rolled_back``) if the alias carries its id,
``intent_aborted`` if not (on an object store after fencing the alias, see ``_repair``). So a crash at
any point leaves a log that names every move of the alias, and a retried promotion finds its version
in production and reports it as promoted. A torn last line of the log is dropped; a damaged alias is
rewritten from the log's last move.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

from .. import names
from ..home import kd_home
from . import files, fs
from .fs import AnyPath

log = logging.getLogger(__name__)

ALIAS = "production"
VERSION_MANIFEST = "manifest.json"
MOVES = ("promoted", "rolled_back")
REPAIR_AFTER_S = 300  # object store: another run's dangling intent is settled only after this long


class PromotionConflict(RuntimeError):
    """The alias moved since the run read it: another promotion won the race."""


def registry_dir(use_case: str, home: AnyPath | None = None) -> AnyPath:
    return names.child(_home(home) / "registry", names.use_case_name(use_case))


def _home(home: AnyPath | str | None) -> AnyPath:
    return fs.as_path(home) if home is not None else kd_home()


def _remote(home: AnyPath | None) -> bool:
    return fs.is_remote(_home(home))


def version_dir(use_case: str, version: str, home: AnyPath | None = None) -> Path:
    """``versions/<version>``; the version must be a content hash (no path can be smuggled in)."""
    return names.child(registry_dir(use_case, home) / "versions", names.version(version))


def export_dir(use_case: str, version: str, home: AnyPath | None = None) -> Path:
    """``exports/<version>``: a version exported for serving (``stages.export``)."""
    return names.child(registry_dir(use_case, home) / "exports", names.version(version))


def alias_path(use_case: str, home: AnyPath | None = None, alias: str = ALIAS) -> Path:
    return registry_dir(use_case, home) / "aliases" / f"{alias}.json"


def log_path(use_case: str, home: AnyPath | None = None) -> AnyPath:
    """The promotion log of a local home (one JSON line per event)."""
    return registry_dir(use_case, home) / "promotions.jsonl"


def log_dir(use_case: str, home: AnyPath | None = None) -> AnyPath:
    """The promotion log of an object-store home (one object per event, keys in write order)."""
    return registry_dir(use_case, home) / "promotions"


def known_versions(use_case: str, home: AnyPath | None = None) -> list[str]:
    vroot = registry_dir(use_case, home) / "versions"
    if _remote(home):  # a version is there once its manifest is (a publish uploads it last)
        return sorted({str(p.relative_to(vroot)).split("/")[0] for p, _ in vroot.walk_files()
                       if p.name == files.FILES_MANIFEST and _is_version(p.parent.name) and p.parent.parent == vroot})
    if not vroot.is_dir():
        return []
    return sorted(p.name for p in vroot.iterdir() if p.is_dir() and _is_version(p.name))


def _is_version(name: str) -> bool:
    try:
        names.version(name)
    except names.InputError:
        return False
    return True


def _rollback_fix(use_case: str, home: AnyPath | None) -> str:
    return (f"point production at a sound version with `python -m kd_tasks.cli rollback --use-case {use_case} "
            f"--version VERSION --reason ...` (registered: {known_versions(use_case, home)})")


def verify_version(use_case: str, version: str, home: AnyPath | None = None) -> Path:
    """The verified directory of a registered version. A version written before manifests is checked
    against its name (the content hash of its student files) and given a manifest."""
    vdir = version_dir(use_case, version, home)
    fix = (f"the registered copy is damaged; restore it from a backup, or {_rollback_fix(use_case, home)}"
           if vdir.is_dir() else f"{use_case} has no registered version {version}; {_rollback_fix(use_case, home)}")
    if not vdir.is_dir():
        raise files.IntegrityError(f"model version directory {vdir} does not exist; {fix}")
    if files.has_manifest(vdir) or not files.may_adopt(vdir):
        files.verify(vdir, "model version file", fix)
    else:
        check_model_dir(vdir, version, fix)
        files.read_json(vdir / VERSION_MANIFEST, "model manifest", fix)
        files.write_manifest(vdir)
        log.info("verified %s (written before manifests) and gave it a manifest", vdir)
    return vdir


def version_manifest(use_case: str, version: str, home: AnyPath | None = None) -> dict[str, Any]:
    vdir = verify_version(use_case, version, home)
    return files.read_json(vdir / VERSION_MANIFEST, "model manifest", _rollback_fix(use_case, home))


# --------------------------------------------------------------------------- the promotion log


def _read_log(use_case: str, home: AnyPath | None) -> tuple[list[dict[str, Any]], bool]:
    """Entries of the log, oldest first (entries that do not parse are skipped and reported) and, on a
    local home, whether its last line is torn (no newline: a writer died mid-append)."""
    if _remote(home):
        return _remote_log(use_case, home), False
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


def _remote_log(use_case: str, home: AnyPath | None) -> list[dict[str, Any]]:
    entries = []
    for path, _ in log_dir(use_case, home).walk_files():  # sorted by key: the order they were written in
        try:
            entry = json.loads(path.read_bytes().decode("utf-8"))
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except (UnicodeDecodeError, ValueError):
            log.warning("%s is damaged and was skipped", path)
            continue
        except FileNotFoundError:
            continue
        entries.append(entry)
    return entries


def promotion_log(use_case: str, home: AnyPath | None = None, intents: bool = False) -> list[dict[str, Any]]:
    """The log's outcomes, oldest first (with ``intents``, the intent lines too); a torn last line or a
    damaged line is left out."""
    return [e for e in _read_log(use_case, home)[0] if intents or e.get("outcome") != "intent"]


def _append_log(use_case: str, home: AnyPath | None, entry: dict[str, Any]) -> bool:
    """Append an entry. On an object store each entry is an object with an ordered key; the outcome of
    an intent has a key of its own that only one writer can create: False when another wrote it first."""
    if _remote(home):
        outcome = entry.get("outcome")
        seq = entry.get("seq") or f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"
        if outcome == "intent":
            key = f"{seq}-a-intent.json"
        elif "seq" in entry:  # closes an intent: created once, by whoever gets there first
            key = f"{seq}-b-outcome.json"
        else:
            key = f"{seq}-{outcome}.json"
        data = (json.dumps(entry, sort_keys=True, default=str) + "\n").encode()
        target = log_dir(use_case, home) / key
        try:
            target.store.put_if(target.key, data, None)
        except fs.PreconditionFailed:
            return False
        return True
    with open(log_path(use_case, home), "ab") as fh:
        fh.write((json.dumps(entry, sort_keys=True, default=str) + "\n").encode())
        fh.flush()
        os.fsync(fh.fileno())
    return True


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


# --------------------------------------------------------------------------- the alias


def _alias_with_tag(use_case: str, home: AnyPath | None) -> tuple[dict[str, Any] | None, str | None]:
    """The alias (None before the first promotion) and the tag a compare-and-swap must name: the
    object's ETag on an object store, None locally (the lock serialises writers there). A damaged alias
    raises ``IntegrityError``."""
    path = alias_path(use_case, home)
    if _remote(home):
        raw, etag = path.store.get(path.key)
        if raw is None:
            return None, None
        alias = _parse_alias(path, raw, use_case, home)
        return (alias if alias.get("version") is not None else None), etag
    if not path.exists():
        return None, None
    return _parse_alias(path, path.read_bytes(), use_case, home), None


def _parse_alias(path: AnyPath, raw: bytes, use_case: str, home: AnyPath | None) -> dict[str, Any]:
    fix = _rollback_fix(use_case, home)
    try:
        alias = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise files.IntegrityError(f"production alias {path} is damaged ({exc}); {fix}") from None
    if not isinstance(alias, dict) or not (_is_version(alias.get("version"))
                                           or (alias.get("version") is None and "fenced" in alias)):
        raise files.IntegrityError(f"production alias {path} names no valid version ({alias!r}); {fix}")
    return alias


def _read_alias(use_case: str, home: AnyPath | None) -> dict[str, Any] | None:
    """The alias, or None before the first promotion; a damaged one raises ``IntegrityError``."""
    return _alias_with_tag(use_case, home)[0]


def _write_alias(use_case: str, home: AnyPath | None, payload: dict[str, Any], tag: str | None = None,
                 conditional: bool = False) -> None:
    """Write the alias; with ``conditional`` on an object store, only if it still has ``tag`` (None: only
    if there is none), else ``fs.PreconditionFailed``."""
    path = alias_path(use_case, home)
    if _remote(home) and conditional:
        path.store.put_if(path.key, (json.dumps(payload, sort_keys=True, default=str) + "\n").encode(), tag)
        return
    files.write_json(path, payload, indent=None)


@contextlib.contextmanager
def _locked(use_case: str, home: AnyPath | None, repair: bool = True, run_id: str | None = None) -> Iterator[None]:
    """The registry's lock (on a local home; an object-store home has none: every move of the alias is a
    conditional write). Whoever holds it first finishes what a crashed holder left half done (unless
    ``repair`` is False: the caller repairs, and copes when repairing fails)."""
    if _remote(home):
        if repair:
            _repair(use_case, home, run_id)
        yield
        return
    rdir = registry_dir(use_case, home)
    rdir.mkdir(parents=True, exist_ok=True)
    with open(rdir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            if repair:
                _repair(use_case, home, run_id)
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _repair(use_case: str, home: AnyPath | None, run_id: str | None = None) -> None:
    """Drop a torn last log line, complete or abort dangling intents, and rewrite a damaged alias from
    the log's last move. Locally this runs under the lock. On an object store a dangling intent may be
    a promotion in flight: it is settled only when it is older than ``REPAIR_AFTER_S`` or was left by
    an earlier attempt of ``run_id``, and it is aborted by first rewriting the alias (a conditional
    write), so the writer it belonged to can no longer move it."""
    path = log_path(use_case, home)
    entries, torn = _read_log(use_case, home)
    if torn:
        raw = path.read_bytes()
        keep = raw[:raw.rfind(b"\n") + 1]
        files.write_bytes(path, keep)
        log.warning("%s: dropped a torn last line of %d bytes (a writer died mid-append)", path, len(raw) - len(keep))
    closed = {e.get("intent_id") for e in entries if e.get("outcome") != "intent"}
    try:
        alias, tag = _alias_with_tag(use_case, home)
    except files.IntegrityError as exc:
        alias, tag = _heal_alias(use_case, home, entries, closed, exc), None
    for e in entries:
        if e.get("outcome") != "intent" or e.get("intent_id") in closed:
            continue
        moved = alias is not None and alias.get("intent_id") == e["intent_id"]
        if _remote(home) and not moved:
            if not _settle_now(e, run_id):
                continue
            try:  # fence: the writer of this intent named the alias's old ETag, which this write changes
                _write_alias(use_case, home, {**(alias or {"version": None}), "fenced": e["intent_id"]}, tag,
                             conditional=True)
            except fs.PreconditionFailed:
                log.info("%s: the alias moved while settling intent %s; left for later", use_case, e["intent_id"])
                return
            alias, tag = _alias_with_tag(use_case, home)
        outcome = e.get("move", "promoted") if moved else "intent_aborted"
        if _append_log(use_case, home, {**e, "outcome": outcome, "at": _now(), "repaired": True}):
            log.warning("%s: completed a move interrupted by a crash: %s %s", use_case, outcome, e.get("version"))


def _settle_now(intent: dict[str, Any], run_id: str | None) -> bool:
    if run_id is not None and intent.get("run_id") == run_id:
        return True  # an earlier attempt of this very run: it is not running any more
    try:
        age = (dt.datetime.now(dt.timezone.utc) - dt.datetime.fromisoformat(intent["at"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return True
    return age > REPAIR_AFTER_S


def _heal_alias(use_case: str, home: AnyPath | None, entries: list[dict[str, Any]], closed: set[Any],
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


def alias_version(use_case: str, home: AnyPath | None = None) -> str | None:
    """The version production points at (None before the first promotion). A damaged alias is
    rewritten from the promotion log when it can be, else ``IntegrityError`` says how to recover."""
    try:
        alias = _read_alias(use_case, home)
    except files.IntegrityError:
        with _locked(use_case, home):  # repairs it, or raises with the fix
            alias = _read_alias(use_case, home)
    return alias["version"] if alias else None


def champion(use_case: str, home: AnyPath | None = None) -> dict[str, Any] | None:
    """``{"version", "path", "manifest"}`` of the verified production model, or None before the first
    promotion. A damaged model raises ``IntegrityError`` naming the file and the recovery."""
    version = alias_version(use_case, home)
    if version is None:
        return None
    manifest = version_manifest(use_case, version, home)
    return {"version": version, "path": str(version_dir(use_case, version, home)), "manifest": manifest}


# --------------------------------------------------------------------------- registering and moving


def _register(use_case: str, model_dir: str | Path, version: str, manifest: dict[str, Any],
              home: AnyPath | None) -> Path:
    """Copy a model into ``versions/<version>`` (immutable: a sound existing version is kept as it is;
    a damaged one is replaced by the same content)."""
    vdir = version_dir(use_case, version, home)
    model_dir = files.local_copy(model_dir, "model", "clear the distill_student task of this run to retrain")
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
    model_dir = fs.as_path(model_dir)
    actual = files.content_version(model_dir, exclude=(VERSION_MANIFEST,))
    if actual != version:
        raise files.IntegrityError(f"model files in {model_dir} hash to {actual}, not to version {version}: they "
                                   f"changed after training; {fix}")
    return model_dir


def _entry(use_case: str, version: str, manifest: dict[str, Any], reason: str, **extra: Any) -> dict[str, Any]:
    approval = {"approval": manifest["approval"]} if manifest.get("approval") else {}  # a person's answer
    return {"at": _now(), "use_case": use_case, "version": version,
            "reason": reason, "run_id": manifest.get("run_id"), "ds": manifest.get("ds"), **approval, **extra}


def _move(use_case: str, home: AnyPath | None, entry: dict[str, Any], move: str, tag: str | None) -> None:
    """Log the intent, move the alias (conditionally on ``tag`` on an object store: a lost race logs
    ``lost_race`` and raises ``PromotionConflict``), log the outcome: a crash anywhere is completed by
    ``_repair``."""
    intent_id = uuid.uuid4().hex
    intent = {**entry, "outcome": "intent", "move": move, "intent_id": intent_id,
              "seq": f"{time.time_ns():020d}-{intent_id[:12]}"}
    _append_log(use_case, home, intent)
    files.fault_point("intent_logged")
    try:
        _write_alias(use_case, home, {"version": entry["version"], "promoted_at": entry["at"],
                                      "previous": entry["previous"], "intent_id": intent_id}, tag, conditional=True)
    except fs.PreconditionFailed:
        _append_log(use_case, home, {**intent, "outcome": "intent_aborted", "at": _now()})
        _append_log(use_case, home, {**entry, "outcome": "lost_race"})
        current = _read_alias(use_case, home)
        raise PromotionConflict(
            f"{use_case}: production moved to {current and current['version']} while this run was moving it "
            f"from {entry['previous']}; version {entry['version']} is kept in the registry but not moved. "
            "Re-run the evaluation against the new champion"
        ) from None
    files.fault_point("alias_moved")
    _append_log(use_case, home, {**intent, "outcome": move, "at": entry["at"]})


def promote(use_case: str, model_dir: str | Path, version: str, manifest: dict[str, Any],
            expected_champion: str | None, home: AnyPath | None = None, reason: str = "gate passed") -> dict[str, Any]:
    """Copy ``model_dir`` into ``versions/<version>`` and point the alias at it (compare-and-swap).

    ``expected_champion`` is the version the run evaluated against (None when there was none). If the
    alias already points at ``version`` (a retry, or a rerun with the same inputs) nothing moves and the
    result says ``already``. If it points elsewhere than expected, nothing moves and
    ``PromotionConflict`` is raised after logging.
    """
    with _locked(use_case, home, run_id=manifest.get("run_id")):
        vdir = _register(use_case, model_dir, version, manifest, home)
        alias, tag = _alias_with_tag(use_case, home)
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
        _move(use_case, home, entry, "promoted", tag)
    return {"version": version, "path": str(vdir), "previous": current, "already": False}


def record_candidate(use_case: str, model_dir: str | Path, version: str, manifest: dict[str, Any],
                     home: AnyPath | None = None, reason: str = "candidate", outcome: str = "candidate") -> dict[str, Any]:
    """Keep a model in the registry and log it as a ``candidate`` (or ``rejected``: a promotion a person
    did not approve), once per run; the alias does not move."""
    if outcome not in ("candidate", "rejected"):
        raise ValueError(f"record_candidate logs a candidate or a rejection, not {outcome!r}")
    with _locked(use_case, home):
        vdir = _register(use_case, model_dir, version, manifest, home)
        alias = _read_alias(use_case, home)
        current = alias["version"] if alias else None
        logged = any(e.get("outcome") == outcome and e.get("version") == version
                     and e.get("run_id") == manifest.get("run_id") for e in promotion_log(use_case, home))
        if not logged:
            _append_log(use_case, home, _entry(use_case, version, manifest, reason, outcome=outcome,
                                               previous=current, gate=manifest.get("gate")))
    return {"version": version, "path": str(vdir), "champion": current}


def rollback(use_case: str, version: str, reason: str, home: AnyPath | None = None) -> dict[str, Any]:
    """Point ``production`` at an earlier registered, verified version (logged as a manual move).
    Works when the alias or the log is damaged: that is when it is needed."""
    names.version(version)  # before the lock creates any folder
    with _locked(use_case, home, repair=False):
        try:
            _repair(use_case, home)
            alias, tag = _alias_with_tag(use_case, home)
            previous = alias["version"] if alias else None
        except files.IntegrityError as exc:
            log.warning("%s; rolling back over it", exc)
            previous, tag = None, _damaged_tag(use_case, home)
        if not version_dir(use_case, version, home).is_dir():
            raise names.InputError(f"{use_case} has no registered version {version!r}; "
                                   f"known versions: {known_versions(use_case, home)}")
        verify_version(use_case, version, home)
        entry = {"at": _now(), "use_case": use_case, "version": version, "previous": previous, "reason": reason}
        _move(use_case, home, entry, "rolled_back", tag)
    return {"version": version, "previous": previous}


def _damaged_tag(use_case: str, home: AnyPath | None) -> str | None:
    """The ETag of a damaged alias object (a rollback replaces it conditionally); None locally."""
    if not _remote(home):
        return None
    path = alias_path(use_case, home)
    return path.store.get(path.key)[1]


def night_champion(use_case: str, ds: str, home: AnyPath | None = None, run_id: str | None = None) -> str | None:
    """The production version as of the first run for ``(use_case, ds)``: what every run of that night
    warm-starts from, so a rerun with the same inputs trains the same student. Recorded on first call
    in ``registry/<use_case>/nights/ds=<ds>.json``."""
    path = registry_dir(use_case, home) / "nights" / f"ds={names.ds(ds)}.json"
    if _remote(home):
        return _remote_night_champion(use_case, ds, path, home, run_id)
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


def _remote_night_champion(use_case: str, ds: str, path: fs.S3Path, home: AnyPath | None,
                           run_id: str | None) -> str | None:
    """The night record on an object store: created once (``If-None-Match: *``); a damaged one is
    replaced conditionally on its ETag; whoever loses a race reads the winner's record."""
    for _ in range(5):
        raw, etag = path.store.get(path.key)
        if raw is not None:
            try:
                recorded = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                log.warning("night record %s is damaged; recording the current champion again", path)
                recorded = None
            if isinstance(recorded, dict) and (recorded.get("champion") is None
                                               or _is_version(recorded.get("champion"))):
                return recorded.get("champion")
        alias = _read_alias(use_case, home)
        version = alias["version"] if alias else None
        record = {"use_case": use_case, "ds": ds, "champion": version, "recorded_at": _now(), "run_id": run_id}
        try:
            path.store.put_if(path.key, (json.dumps(record, sort_keys=True) + "\n").encode(), etag)
            return version
        except fs.PreconditionFailed:
            continue  # another run recorded it first: read theirs
    raise PromotionConflict(f"{use_case}: could not record the champion of night {ds} at {path}; retry the task")
