"""Every file the pipeline writes goes through here: one atomic write for a file (``atomic_path``) and
one for a folder (``publish_dir``), content manifests and content versions, damage-tolerant JSON
reads, a sweep of crash leftovers, and named fault points for crash tests.

**Manifest-last.** A partition, a registry version or an export is a folder whose ``_kd_files.json``
(written last) lists each file with its size and sha256. A reader trusts only a folder whose files
match their manifest; anything else was half-written by a crash or damaged later. A folder written
before manifests existed has none: ``adopt`` verifies it by other means and gives it one on first read.
The scheme needs no rename of a folder, so it ports to object stores where a PUT is atomic but a
rename is a copy.

**Temporary names** carry the writer's host and PID: ``.<name>.tmp-<host>-<pid>-<random>``. ``sweep``
removes those whose writer is dead (same host) or that are older than a day (any host); readers never
look at names starting with a dot.

**On an object store** (``fs.S3Path``) nothing is renamed: a file is built locally and uploaded in one
PUT (it appears whole or not at all), and a folder's files are uploaded to their final names with the
manifest last, so a reader trusts the folder only once it is complete. A writer first leaves an empty
marker object under the temporary name above; ``sweep`` treats a folder whose marker is stale as a
crashed publish: it deletes the files its manifest does not list (the whole folder when it has no
manifest), then the marker. Folders are never adopted without a manifest there (no object-store home
predates manifests).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

from .fs import AnyPath, S3Path, as_path, cache_dir, is_remote, open_read

log = logging.getLogger(__name__)
T = TypeVar("T")

FILES_MANIFEST = "_kd_files.json"
FAULT_ENV = "KD_FAULT_POINT"
FAULT_ONCE_ENV = "KD_FAULT_ONCE"  # "<point>@<marker file>": raise at that point once (retry tests)
TEACHER_MANIFEST = "kd_manifest.json"  # records a teacher's version, so is not part of it
STALE_AFTER_S = 24 * 3600  # a temporary entry of another host is garbage after this long
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<host>[A-Za-z0-9_.-]*?)-(?P<pid>\d+)-[0-9a-f]{8,32}$")
_LEGACY_TEMP = re.compile(r"^\..+\.(?:tmp|old)-[0-9a-f]{32}$")  # written before temp names carried a PID


class IntegrityError(RuntimeError):
    """A file the pipeline wrote is missing, truncated or changed since it was written."""


class InjectedFault(RuntimeError):
    """A transient failure injected by ``$KD_FAULT_ONCE`` (retry tests)."""


def fault_point(name: str) -> None:
    """Crash here (SIGKILL, no cleanup) when ``$KD_FAULT_POINT`` names this point: the crash tests'
    way to stop a real stage at the worst moment. With ``$KD_FAULT_ONCE=<point>@<marker file>``, fail
    here with ``InjectedFault`` the first time only (the marker records it): a transient error for the
    retry tests. A no-op otherwise."""
    if os.environ.get(FAULT_ENV) == name:
        log.warning("fault point %s: killing process %d", name, os.getpid())
        os.kill(os.getpid(), signal.SIGKILL)
    point, _, marker = os.environ.get(FAULT_ONCE_ENV, "").partition("@")
    if point == name and marker:
        try:
            with open(marker, "x"):
                pass
        except FileExistsError:
            return
        raise InjectedFault(f"injected transient failure at {name}")


def temp_path(path: AnyPath, kind: str = "tmp") -> AnyPath:
    host = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:40]
    return path.parent / f".{path.name}.{kind}-{host}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sweep_siblings(path: AnyPath) -> None:
    """Remove the crash leftovers of earlier writes of ``path`` (cheap: one directory listing)."""
    if is_remote(path):
        for p in path.parent.glob(f".{path.name}.*-*"):
            if is_stale_temp(p):
                _finish_remote_publish(p)
        return
    if path.parent.is_dir():
        for p in path.parent.glob(f".{path.name}.*-*"):
            if is_stale_temp(p):
                remove_tree(p)
                log.info("removed crash leftover %s", p)


def _finish_remote_publish(marker: S3Path) -> None:
    """A stale publish marker: its folder was left half-uploaded. Delete what no manifest lists."""
    m = _TEMP.match(marker.name)
    target = marker.parent / m.group("name") if m else None
    if target is not None:
        live = [p for p in marker.parent.glob(f".{target.name}.*-*") if p != marker and not is_stale_temp(p)]
        if live:
            return  # another writer is publishing it now
        listed: set[str] | None = None
        for manifest_name in (FILES_MANIFEST, TEACHER_MANIFEST):
            try:
                listed = set(json.loads((target / manifest_name).read_bytes()).get("files") or {}) | {manifest_name}
                break
            except (OSError, ValueError, AttributeError):
                continue
        if listed is None:
            target.remove_tree()
        for p, _ in target.walk_files() if listed is not None else ():
            if str(p.relative_to(target)) not in listed:
                p.unlink(missing_ok=True)
        log.info("removed the leftovers of a crashed publish of %s", target)
    marker.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | AnyPath) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; on success it is synced and renamed over
    ``path`` (readers see the old file or the new one), on failure removed. On an object store the
    temporary file is local and is uploaded in one PUT."""
    path = as_path(path)
    if is_remote(path):
        with tempfile.TemporaryDirectory(prefix="kd-put-") as local:
            tmp = Path(local) / path.name
            yield tmp
            fault_point(f"before_replace:{path.name}")
            path.upload(tmp)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_siblings(path)
    tmp = temp_path(path)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        fault_point(f"before_replace:{path.name}")
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def publish_dir(target: str | Path, build: Callable[[Path], T], swap_fault: str | None = None) -> T:
    """The atomic write of a folder: ``build(tmp)`` fills a temporary sibling of ``target`` (its
    manifest last), which is then swapped in (an existing ``target`` is moved aside first and removed
    after). Readers trust a folder only by its manifest, so a crash anywhere leaves either the old
    folder, the new one, or leftovers that ``sweep`` removes. Returns what ``build`` returned.
    ``swap_fault`` names the fault point between the two renames of the swap (crash tests).
    On an object store: see the module's docs (``swap_fault`` then fires before the manifest's upload)."""
    target = as_path(target)
    if is_remote(target):
        return _publish_remote(target, build, swap_fault)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_siblings(target)
    tmp = temp_path(target)
    try:
        tmp.mkdir()
        result = build(tmp)
        old = temp_path(target, "old")
        if target.exists():
            os.replace(target, old)
        if swap_fault:
            fault_point(swap_fault)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        remove_tree(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _publish_remote(target: S3Path, build: Callable[[Path], T], swap_fault: str | None) -> T:
    sweep_siblings(target)
    with tempfile.TemporaryDirectory(prefix="kd-publish-") as local:
        tmp = Path(local) / target.name
        tmp.mkdir()
        result = build(tmp)
        marker = temp_path(target)
        marker.write_bytes(b"")
        manifests = [n for n in (TEACHER_MANIFEST, FILES_MANIFEST) if (tmp / n).is_file()]
        for name in manifests:  # from here on readers see the folder as incomplete, never as a mix
            (target / name).unlink(missing_ok=True)
        new = [str(p.relative_to(tmp)) for p in sorted(tmp.rglob("*")) if p.is_file()]
        for name in new:
            if name not in manifests:
                (target / name).upload(tmp / name)
        if swap_fault:
            fault_point(swap_fault)
        for name in manifests:
            (target / name).upload(tmp / name)
        for p, _ in target.walk_files():  # files of an earlier version of the folder
            if str(p.relative_to(target)) not in new:
                p.unlink(missing_ok=True)
        marker.unlink(missing_ok=True)
    return result


def write_bytes(path: str | AnyPath, data: bytes) -> AnyPath:
    """The one atomic write: ``data`` lands at ``path`` whole or not at all."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return as_path(path)


def write_json(path: str | AnyPath, obj: Any, indent: int | None = 2) -> Path:
    return write_bytes(path, (json.dumps(obj, indent=indent, sort_keys=True, default=str) + "\n").encode())


def read_json(path: str | AnyPath, what: str, fix: str) -> Any:
    """Parse a JSON file the pipeline wrote; a missing, truncated or garbled one raises
    ``IntegrityError`` naming the file and the fix."""
    path = as_path(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise IntegrityError(f"{what} {path} does not exist; {fix}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"{what} {path} is damaged ({exc}); {fix}") from None


def sha256_file(path: AnyPath) -> str:
    h = hashlib.sha256()
    with open_read(path) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files_under(directory: AnyPath) -> list[AnyPath]:
    if is_remote(directory):
        return [p for p, _ in directory.walk_files()]
    return sorted(p for p in directory.rglob("*") if p.is_file())


def content_version(directory: str | AnyPath, exclude: Sequence[str] = ()) -> str:
    """A folder's version: sha256 over every file's relative path and bytes (manifests, hidden files and
    ``exclude`` left out), first 12 hex digits. Models and teachers are named by it."""
    directory = as_path(directory)
    skip = {FILES_MANIFEST, TEACHER_MANIFEST, *exclude}
    h = hashlib.sha256()
    for p in sorted(_files_under(directory), key=lambda p: str(p.relative_to(directory))):
        if p.name not in skip and not p.name.startswith("."):
            h.update(str(p.relative_to(directory)).encode())
            with open_read(p) as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:12]


def listed_files(directory: AnyPath) -> list[str]:
    """Every regular file under ``directory`` (relative, sorted), without the manifest and hidden names."""
    return sorted(str(p.relative_to(directory)) for p in _files_under(directory)
                  if p.name != FILES_MANIFEST
                  and not any(part.startswith(".") for part in p.relative_to(directory).parts))


def write_manifest(directory: str | AnyPath, files: Iterable[str] | None = None, **extra: Any) -> dict[str, Any]:
    """List ``files`` (default: every file) of ``directory`` with sizes and hashes in ``_kd_files.json``.
    Call it last: the folder is complete, for every reader, from this write on."""
    directory = as_path(directory)
    names = sorted(files) if files is not None else listed_files(directory)
    manifest = {"files": {n: {"bytes": (directory / n).stat().st_size, "sha256": sha256_file(directory / n)}
                          for n in names}, **extra}
    fault_point(f"before_manifest:{directory.name}")
    write_json(directory / FILES_MANIFEST, manifest)
    return manifest


def has_manifest(directory: str | AnyPath) -> bool:
    return (as_path(directory) / FILES_MANIFEST).is_file()


def may_adopt(directory: str | AnyPath) -> bool:
    """Whether a folder without a manifest may be a sound folder written before manifests (a local home
    only: on an object store it is a publish that has not finished, or crashed)."""
    return not is_remote(as_path(directory))


def verify(directory: str | AnyPath, what: str, fix: str, only: Iterable[str] | None = None,
           contents: Mapping[str, bytes] | None = None) -> dict[str, Any]:
    """Check ``directory`` against its manifest (all files, or those in ``only``); raise
    ``IntegrityError`` naming the first file that is missing or differs, and the fix. ``contents``:
    bytes already read of some files, checked instead of reading them again."""
    directory = as_path(directory)
    manifest = read_json(directory / FILES_MANIFEST, f"{what} manifest", fix)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise IntegrityError(f"{what} manifest {directory / FILES_MANIFEST} lists no files; {fix}")
    for name in (only if only is not None else files):
        entry, path = files.get(name), directory / name
        if entry is None:
            raise IntegrityError(f"{what} {path} is not in its manifest {directory / FILES_MANIFEST}; {fix}")
        data = (contents or {}).get(name)
        if data is None and not path.is_file():
            raise IntegrityError(f"{what} {path} is missing (listed in {directory / FILES_MANIFEST}); {fix}")
        size = path.stat().st_size if data is None else len(data)
        if size != entry.get("bytes"):
            raise IntegrityError(f"{what} {path} has {size} bytes but was written with {entry.get('bytes')} "
                                 f"(truncated or changed); {fix}")
        digest = sha256_file(path) if data is None else hashlib.sha256(data).hexdigest()
        if digest != entry.get("sha256"):
            raise IntegrityError(f"{what} {path} does not match the hash it was written with "
                                 f"(changed or damaged); {fix}")
    return manifest


def remove_tree(path: AnyPath) -> None:
    if is_remote(path):
        path.remove_tree()
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale_temp(path: AnyPath, now: float | None = None, stale_after_s: float = STALE_AFTER_S) -> bool:
    """A temporary entry left by a writer that is gone: dead PID on this host, or too old anywhere."""
    m = _TEMP.match(path.name)
    try:
        age = (now or time.time()) - path.lstat().st_mtime
    except FileNotFoundError:
        return False
    if m is None:
        return bool(_LEGACY_TEMP.match(path.name)) and age > 60
    host = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:40]
    if m.group("host") == host and int(m.group("pid")) != os.getpid():
        return not _pid_alive(int(m.group("pid"))) or age > stale_after_s
    return age > stale_after_s


def sweep(root: str | AnyPath, stale_after_s: float = STALE_AFTER_S) -> list[AnyPath]:
    """Remove crash leftovers (temporary files and folders of dead writers, on an object store the
    files of a crashed publish) under ``root``."""
    root = as_path(root)
    removed: list[AnyPath] = []
    if is_remote(root):
        now = time.time()
        for p, _ in root.walk_files():
            if p.name.startswith(".") and is_stale_temp(p, now, stale_after_s):
                _finish_remote_publish(p)
                removed.append(p)
        return removed
    if not root.is_dir():
        return removed
    now = time.time()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in list(dirnames) + filenames:
            if name.startswith(".") and is_stale_temp(Path(dirpath) / name, now, stale_after_s):
                remove_tree(Path(dirpath) / name)
                removed.append(Path(dirpath) / name)
                if name in dirnames:
                    dirnames.remove(name)
    for p in removed:
        log.info("removed crash leftover %s", p)
    return removed


def local_copy(directory: str | AnyPath, what: str, fix: str) -> Path:
    """A local folder with the files of ``directory``: the folder itself on a local home; on an object
    store a copy in this worker's cache, keyed by content (a teacher by its version, any other folder by
    its manifest's hash), downloaded once, checked file by file against the manifest's hashes and moved
    into place whole. Raises ``IntegrityError`` naming the file and ``fix``."""
    directory = as_path(directory)
    if not is_remote(directory):
        return directory
    raw = None
    for name in (TEACHER_MANIFEST, FILES_MANIFEST):
        try:
            raw, manifest_name = (directory / name).read_bytes(), name
            break
        except FileNotFoundError:
            continue
    if raw is None:
        raise IntegrityError(f"{what} {directory} has no manifest ({TEACHER_MANIFEST} or {FILES_MANIFEST}): it "
                             f"does not exist or its upload did not finish; {fix}")
    try:
        manifest = json.loads(raw.decode("utf-8"))
        listed = manifest["files"]
        digests = {n: (e["sha256"] if isinstance(e, dict) else e) for n, e in listed.items()}
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"{what} manifest {directory / manifest_name} is damaged ({exc}); {fix}") from None
    version = manifest.get("version") if manifest_name == TEACHER_MANIFEST else None
    key = f"teachers/{version}" if isinstance(version, str) and re.fullmatch(r"[0-9a-f]{12}", version) \
        else f"folders/{hashlib.sha256(raw).hexdigest()[:24]}"
    final = cache_dir() / key
    if (final / manifest_name).is_file() and (final / manifest_name).read_bytes() == raw:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.download-", dir=final.parent))
    try:
        for name, digest in sorted(digests.items()):
            local = tmp / name
            local.parent.mkdir(parents=True, exist_ok=True)
            try:
                (directory / name).download(local)
            except FileNotFoundError:
                raise IntegrityError(f"{what} {directory / name} is missing (listed in "
                                     f"{directory / manifest_name}); {fix}") from None
            if sha256_file(local) != digest:
                raise IntegrityError(f"{what} {directory / name} does not match the hash it was written with "
                                     f"(changed or damaged); {fix}")
        (tmp / manifest_name).write_bytes(raw)
        try:
            os.replace(tmp, final)
        except OSError:  # another process of this worker finished the same copy first
            if not (final / manifest_name).is_file() or (final / manifest_name).read_bytes() != raw:
                shutil.rmtree(final, ignore_errors=True)
                os.replace(tmp, final)
        log.info("copied %s %s to this worker's cache %s", what, directory, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
