"""Teacher directories: a model family's files plus ``kd_manifest.json`` (family, label names, training
data, version and per-file hashes), written last.

The version is a content hash of every file but the manifest, so any change of weights or tokenizer
is a new teacher version. A teacher is built aside and swapped in (``files.publish_dir``); a reader
trusts it only when its files hash to the version its manifest records.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from . import files
from .files import TEACHER_MANIFEST as MANIFEST, IntegrityError
from .fs import AnyPath, as_path, is_remote

log = logging.getLogger(__name__)
FIX_TEACHER = ("run the kd_teacher_bootstrap DAG (or `python -m kd_tasks.cli bootstrap-teacher`) to create "
               "one, or point teacher_dir at a directory saved with save_pretrained plus kd_manifest.json")
DEFAULT_FAMILY = "hf_sequence_classifier"  # a manifest without "family" was written by the text teacher


class TeacherError(IntegrityError):
    """The teacher directory is missing, incomplete or corrupt."""


def local_teacher(path: str | AnyPath) -> Path:
    """The teacher at ``path`` as a local folder: itself on a local home, on an object store this
    worker's cached copy of that teacher version (downloaded once, every file checked)."""
    try:
        return files.local_copy(path, "teacher", FIX_TEACHER)
    except IntegrityError as exc:
        raise TeacherError(str(exc)) from None


def verified_manifest(path: str | Path, weight_files: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The manifest of the teacher at ``path`` after checking that its family is known (``weight_files``:
    family -> the files that can hold its weights), that it has weights, and that its files hash to the
    version the manifest records. Every refusal names how to get a usable teacher. The manifest's
    ``family`` and ``version`` are always set in what is returned."""
    path = Path(path)
    fix = FIX_TEACHER
    recover_teacher(path)
    if not path.is_dir():
        raise TeacherError(f"no teacher at {path}; {fix}")
    manifest = None
    if (path / MANIFEST).is_file():
        try:
            manifest = files.read_json(path / MANIFEST, "teacher manifest", fix)
        except IntegrityError as exc:
            raise TeacherError(str(exc)) from None
        if not isinstance(manifest, dict):
            raise TeacherError(f"teacher manifest {path / MANIFEST} is not a JSON object; {fix}")
    family = (manifest or {}).get("family", DEFAULT_FAMILY)
    if family not in weight_files:
        raise TeacherError(f"teacher at {path} has unknown family {family!r}; known: {sorted(weight_files)}")
    weights = weight_files[family]
    if not any((path / w).is_file() for w in weights):
        raise TeacherError(f"teacher directory {path} has no weights ({' or '.join(weights)}); {fix}")
    if manifest is None:
        raise TeacherError(f"teacher directory {path} has no {MANIFEST} (label names, version); {fix}")
    version = files.content_version(path)
    if manifest.get("version") != version:
        changed = [name for name, digest in (manifest.get("files") or {}).items()
                   if not (path / name).is_file() or files.sha256_file(path / name) != digest]
        raise TeacherError(
            f"teacher files in {path} hash to {version} but its manifest says {manifest.get('version')}: "
            f"the directory was changed or is corrupt{' (changed: ' + ', '.join(changed) + ')' if changed else ''}; "
            f"{fix}"
        )
    return {**manifest, "family": family, "version": version}


def publish_teacher(out_dir: str | Path, write: Callable[[Path], dict[str, Any]],
                    manifest_fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build a teacher in a temporary sibling directory with ``write(tmp) -> manifest fields``, add the
    manifest (content version and per-file hashes, written last) and swap it in. A crash before the
    manifest leaves a temporary folder that ``files.sweep`` removes; a crash between the two renames of
    the swap is finished by the next reader (``recover_teacher``). Returns the manifest."""
    out_dir = as_path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    recover_teacher(out_dir)
    manifest = files.publish_dir(out_dir, lambda tmp: build_teacher(tmp, write, manifest_fields, "teacher_written"),
                                 swap_fault="teacher_swap")
    log.info("teacher version %s written to %s", manifest["version"], out_dir)
    return manifest


def build_teacher(directory: Path, write: Callable[[Path], dict[str, Any]],
                  manifest_fields: dict[str, Any] | None = None, fault: str | None = None) -> dict[str, Any]:
    """Write a teacher into ``directory`` in place (a scratch folder nobody reads yet: training before
    the teacher gate decides whether to publish): ``write(directory)``, then the manifest, last."""
    manifest = {**(write(directory) or {}), **(manifest_fields or {})}
    manifest["version"] = files.content_version(directory)
    manifest["files"] = {name: files.sha256_file(directory / name) for name in files.listed_files(directory)
                         if name != MANIFEST}
    if fault:
        files.fault_point(fault)
    files.write_json(directory / MANIFEST, manifest)
    return manifest


def _complete_teacher(path: Path) -> bool:
    """A teacher folder whose manifest (written last) exists and matches its files."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        return manifest.get("version") == files.content_version(path)
    except (OSError, ValueError, AttributeError):
        return False


def recover_teacher(out_dir: str | Path) -> bool:
    """Finish a teacher swap a crash interrupted: when nothing is at ``out_dir`` but a complete new
    (``.tmp-``) or old (``.old-``) folder of a dead writer lies beside it, move it into place (the new
    one first). Returns True when it moved one. (An object store renames nothing: a crashed upload is
    swept, see ``files.sweep``.)"""
    out_dir = as_path(out_dir)
    if is_remote(out_dir) or out_dir.exists() or not out_dir.parent.is_dir():
        return False
    leftovers = [p for p in out_dir.parent.glob(f".{out_dir.name}.*-*") if p.is_dir()
                 and files.is_stale_temp(p, stale_after_s=60)]
    for kind in ("tmp", "old"):
        for p in sorted((p for p in leftovers if f".{kind}-" in p.name), key=lambda p: p.stat().st_mtime, reverse=True):
            if _complete_teacher(p):
                os.replace(p, out_dir)
                log.warning("finished an interrupted teacher swap: moved %s to %s", p.name, out_dir)
                files.sweep_siblings(out_dir)
                return True
    return False


def profile_path(use_case: str, version: str, home: AnyPath) -> AnyPath:
    """Where the latency profile of one teacher version is kept: ``<home>/profiles/<use_case>/teacher-<version>.json``."""
    from .. import names

    base = names.child(as_path(home) / "profiles", names.use_case_name(use_case))
    return base / f"teacher-{names.version(version, 'teacher version')}.json"


def read_profile(use_case: str, version: str, home: Path) -> dict[str, Any] | None:
    """The teacher version's latency profile measured by an earlier night, or None (also when damaged:
    then it is measured again)."""
    path = profile_path(use_case, version, home)
    if not path.is_file():
        return None
    try:
        profile = files.read_json(path, "teacher latency profile", "")
    except IntegrityError as exc:
        log.warning("%s; measuring again", str(exc).rstrip("; "))
        return None
    return profile if isinstance(profile, dict) and "p50_ms_b1" in profile else None


def write_profile(use_case: str, version: str, profile: Mapping[str, Any], home: Path) -> Path:
    return files.write_json(profile_path(use_case, version, home), dict(profile))


def read_verdict(path: str | AnyPath) -> dict[str, Any] | None:
    """The teacher gate's verdict recorded in the teacher's manifest (``kd_tasks.stages.teacher_gate``),
    or None for a teacher published without one (trained before the teacher gate, or outside it)."""
    manifest = files.read_json(local_teacher(path) / MANIFEST, "teacher manifest", FIX_TEACHER)
    verdict = manifest.get("verdict") if isinstance(manifest, dict) else None
    return verdict if isinstance(verdict, dict) else None


def acceptance_path(use_case: str, version: str, home: AnyPath) -> AnyPath:
    """Where a person's acceptance of one weak teacher version is kept (beside its latency profile):
    ``<home>/profiles/<use_case>/teacher-<version>.accepted.json``."""
    path = profile_path(use_case, version, home)
    return path.with_name(path.name.replace(".json", ".accepted.json"))


def accept_teacher(use_case: str, path: str | AnyPath, reason: str, home: AnyPath) -> dict[str, Any]:
    """Record that a person accepts the weak teacher at ``path`` for every night it labels (the Param
    ``accept_weak_teacher`` for one run; this for the version). Returns the record."""
    import datetime as dt
    import getpass

    if not reason.strip():
        raise ValueError("accepting a weak teacher needs a reason (it is shown in every night's report)")
    directory = local_teacher(path)
    manifest = files.read_json(directory / MANIFEST, "teacher manifest", FIX_TEACHER)
    version = files.content_version(directory)
    verdict = manifest.get("verdict") if isinstance(manifest, dict) else None
    if not (isinstance(verdict, dict) and verdict.get("weak")):
        raise ValueError(f"teacher {version} at {path} is not marked weak; there is nothing to accept")
    record = {"version": version, "reason": reason.strip(), "by": getpass.getuser(),
              "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "verdict": verdict.get("reason")}
    files.write_json(acceptance_path(use_case, version, home), record)
    log.warning("weak teacher %s of %s accepted: %s", version, use_case, record["reason"])
    return record


def read_acceptance(use_case: str, version: str, home: AnyPath) -> dict[str, Any] | None:
    """A person's acceptance of the weak teacher ``version``, or None."""
    path = acceptance_path(use_case, version, home)
    if not path.is_file():
        return None
    record = files.read_json(path, "teacher acceptance", "run `python -m kd_tasks.cli accept-teacher` again")
    return record if isinstance(record, dict) and record.get("version") == version else None
