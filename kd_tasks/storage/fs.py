"""The one filesystem layer under every reader and writer of ``KD_HOME``: a local folder (``pathlib.Path``)
or an S3 prefix (``S3Path``, on ``pyarrow.fs.S3FileSystem``).

Why ``pyarrow.fs``: it is already how the lake's Parquet is written and read, so one filesystem object
serves the Parquet readers and the pipeline's own files; its S3 client ships inside the pyarrow wheel
(no new I/O dependency and no second event loop, unlike s3fs/aiobotocore); and it takes the endpoint
explicitly, which S3-compatible stores need. What it lacks is a conditional PUT, the one thing the
registry's compare-and-swap needs: ``S3Store.put_if`` does that one call with boto3.

``S3Path`` offers the part of ``pathlib.Path`` the pipeline uses (``/``, ``name``, ``parent``,
``exists``, ``is_file``, ``is_dir``, ``iterdir``, ``glob``, ``rglob``, ``read_bytes``, ``write_bytes``,
``stat``, ``unlink``, ``relative_to``); it has no ``__fspath__``, so handing one to code that needs a
local file fails loudly instead of writing a local folder named ``s3:``. Code that needs a local folder
(a model's ``from_pretrained``) asks ``local_copy`` for a verified copy in the worker's cache.

Settings (the DAG layer may set them from an Airflow AWS connection with ``configure_s3``):
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (an S3-compatible store), ``AWS_REGION`` /
``AWS_DEFAULT_REGION`` (default us-east-1), credentials from AWS's usual chain (environment, profile,
instance role). Secrets are never part of a path's text, a log line or an error.
"""
from __future__ import annotations

import fnmatch
import os
import posixpath
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO, Iterator, Union

if TYPE_CHECKING:
    import pyarrow.fs as pafs


def _pafs() -> Any:
    """pyarrow.fs, imported on first use (DAG files import this module when they are parsed)."""
    import pyarrow.fs

    return pyarrow.fs

SCHEME = "s3://"
_settings: dict[str, str | None] = {}
_stores: dict[tuple[Any, ...], "S3Store"] = {}
_lock = threading.Lock()


class LocationError(ValueError):
    """A location that is neither a local path nor an ``s3://bucket/prefix``."""


class PreconditionFailed(RuntimeError):
    """A conditional write lost: the object changed (or exists) since it was read."""


def configure_s3(access_key: str | None = None, secret_key: str | None = None, session_token: str | None = None,
                 endpoint_url: str | None = None, region: str | None = None) -> None:
    """Use these S3 settings in this process instead of the environment's (the DAG layer passes an
    Airflow connection's). Stores built before keep theirs."""
    with _lock:
        _settings.clear()
        _settings.update(access_key=access_key, secret_key=secret_key, session_token=session_token,
                         endpoint_url=endpoint_url, region=region)


def _setting(name: str, *env: str) -> str | None:
    if _settings.get(name):
        return _settings[name]
    return next((os.environ[e] for e in env if os.environ.get(e)), None)


@dataclass(eq=False)
class S3Store:
    """One S3 endpoint with one set of credentials: a pyarrow filesystem for bytes and a boto3 client
    for conditional writes, both made on first use."""
    endpoint_url: str | None
    region: str
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    _fs: Any = field(default=None, repr=False)
    _client: Any = field(default=None, repr=False)

    @property
    def fs(self) -> pafs.S3FileSystem:
        if self._fs is None:
            kwargs: dict[str, Any] = {"region": self.region}
            if self.endpoint_url:
                scheme, _, host = self.endpoint_url.partition("://")
                kwargs.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
            if self.access_key:
                kwargs.update(access_key=self.access_key, secret_key=self.secret_key,
                              session_token=self.session_token)
            self._fs = _pafs().S3FileSystem(**kwargs)
        return self._fs

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            kwargs: dict[str, Any] = {"region_name": self.region, "endpoint_url": self.endpoint_url,
                                      "config": Config(retries={"max_attempts": 5, "mode": "standard"})}
            if self.access_key:
                kwargs.update(aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                              aws_session_token=self.session_token)
            self._client = boto3.client("s3", **kwargs)
        return self._client

    def get(self, key: str) -> tuple[bytes | None, str | None]:
        """An object's bytes and ETag, or (None, None) when there is none."""
        from botocore.exceptions import ClientError

        bucket, _, name = key.partition("/")
        try:
            obj = self.client.get_object(Bucket=bucket, Key=name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None, None
            raise
        return obj["Body"].read(), obj["ETag"]

    def put_if(self, key: str, data: bytes, etag: str | None) -> str:
        """PUT ``data`` only if the object still has ``etag`` (``None``: only if there is no object);
        returns the new ETag, or raises ``PreconditionFailed``."""
        from botocore.exceptions import ClientError

        bucket, _, name = key.partition("/")
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            return self.client.put_object(Bucket=bucket, Key=name, Body=data, **condition)["ETag"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise PreconditionFailed(f"s3://{key} changed since it was read ({code})") from None
            raise


def store() -> S3Store:
    """The store for this process's settings (cached)."""
    settings = (_setting("endpoint_url", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
                _setting("region", "AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1",
                _settings.get("access_key"), _settings.get("secret_key"), _settings.get("session_token"))
    with _lock:
        if settings not in _stores:
            _stores[settings] = S3Store(*settings)
        return _stores[settings]


class _Stat:
    def __init__(self, info: pafs.FileInfo):
        self.st_size = info.size or 0
        self.st_mtime = info.mtime.timestamp() if info.mtime else 0.0


class S3Path:
    """A path under ``s3://bucket/...`` (see the module's docs for what it supports)."""

    __slots__ = ("store", "key")

    def __init__(self, key: str, s3: S3Store | None = None):
        key = key[len(SCHEME):] if key.startswith(SCHEME) else key
        parts = [p for p in key.split("/") if p not in ("", ".")]
        if not parts or ".." in parts:
            raise LocationError(f"{SCHEME}{key} is not an S3 location (s3://bucket/prefix, no '..')")
        self.key = "/".join(parts)
        self.store = s3 or store()

    # -- pure path operations
    def __truediv__(self, other: Union[str, os.PathLike[str]]) -> "S3Path":
        return S3Path(posixpath.join(self.key, str(other)), self.store)

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def parent(self) -> "S3Path":
        head = self.key.rsplit("/", 1)[0]
        return S3Path(head, self.store) if "/" in self.key else self

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.key.split("/"))

    def with_name(self, name: str) -> "S3Path":
        return self.parent / name

    def relative_to(self, other: "S3Path") -> PurePosixPath:
        if not (self.key + "/").startswith(other.key + "/"):
            raise ValueError(f"{self} is not under {other}")
        return PurePosixPath(self.key[len(other.key):].lstrip("/") or ".")

    def resolve(self) -> "S3Path":
        return self

    def __str__(self) -> str:
        return SCHEME + self.key

    def __reduce__(self) -> tuple[Any, ...]:  # another process rebuilds the store from its own settings
        return (S3Path, (str(self),))

    def __repr__(self) -> str:
        return f"S3Path({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, S3Path) and other.key == self.key

    def __hash__(self) -> int:
        return hash(("s3", self.key))

    def __lt__(self, other: "S3Path") -> bool:
        return self.key < other.key

    # -- what is there
    def _info(self) -> pafs.FileInfo:
        return self.store.fs.get_file_info(self.key)

    def exists(self) -> bool:
        return self._info().type != _pafs().FileType.NotFound

    def is_file(self) -> bool:
        return self._info().type == _pafs().FileType.File

    def is_dir(self) -> bool:
        return self._info().type == _pafs().FileType.Directory

    def stat(self) -> _Stat:
        info = self._info()
        if info.type == _pafs().FileType.NotFound:
            raise FileNotFoundError(str(self))
        return _Stat(info)

    def lstat(self) -> _Stat:
        return self.stat()

    def _list(self, recursive: bool) -> list[pafs.FileInfo]:
        try:
            selector = _pafs().FileSelector(self.key, recursive=recursive, allow_not_found=True)
            return self.store.fs.get_file_info(selector)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def iterdir(self) -> Iterator["S3Path"]:
        for info in sorted(self._list(False), key=lambda i: i.path):
            yield S3Path(info.path, self.store)

    def walk_files(self) -> Iterator[tuple["S3Path", _Stat]]:
        """Every object under this prefix with its size and time (one listing)."""
        for info in sorted(self._list(True), key=lambda i: i.path):
            if info.type == _pafs().FileType.File:
                yield S3Path(info.path, self.store), _Stat(info)

    def glob(self, pattern: str) -> Iterator["S3Path"]:
        depth = len(pattern.split("/"))
        for info in self._list(depth > 1 or "**" in pattern):
            rel = info.path[len(self.key) + 1:]
            if len(rel.split("/")) == depth and fnmatch.fnmatchcase(rel, pattern):
                yield S3Path(info.path, self.store)

    def rglob(self, pattern: str) -> Iterator["S3Path"]:
        for info in self._list(True):
            if fnmatch.fnmatchcase(info.path.rsplit("/", 1)[-1], pattern):
                yield S3Path(info.path, self.store)

    # -- bytes
    def open_read(self) -> BinaryIO:
        return self.store.fs.open_input_stream(self.key)  # type: ignore[return-value]

    def read_bytes(self) -> bytes:
        with self.open_read() as fh:
            return fh.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        """One PUT: the object appears whole when the write completes, or not at all."""
        with self.store.fs.open_output_stream(self.key) as fh:
            fh.write(data)
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    def upload(self, local: Path) -> None:
        _pafs().copy_files(str(local), self.key, destination_filesystem=self.store.fs)

    def download(self, local: Path) -> None:
        _pafs().copy_files(self.key, str(local), source_filesystem=self.store.fs)

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: a prefix exists once an object is under it."""

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.store.fs.delete_file(self.key)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def remove_tree(self) -> None:
        info = self._info()
        if info.type == _pafs().FileType.Directory:
            self.store.fs.delete_dir(self.key)
        elif info.type == _pafs().FileType.File:
            self.store.fs.delete_file(self.key)


AnyPath = Union[Path, S3Path]


def as_path(value: Union[str, os.PathLike[str], S3Path]) -> AnyPath:
    """A ``Path`` or an ``S3Path`` from a path, a ``file://`` or ``s3://`` URI, or either path type."""
    if isinstance(value, (S3Path, Path)):
        return value
    text = str(value)
    if text.startswith(SCHEME):
        return S3Path(text)
    if text.startswith("file://"):
        text = text[len("file://"):]
    elif "://" in text:
        raise LocationError(f"{text!r}: only local paths, file:// and s3:// locations are supported")
    return Path(text)


def is_remote(path: Any) -> bool:
    return isinstance(path, S3Path)


def open_read(path: AnyPath) -> BinaryIO:
    return path.open_read() if isinstance(path, S3Path) else open(path, "rb")


def kd_home() -> AnyPath:
    """Root of everything the pipeline shares between tasks and workers: ``$KD_HOME``, a local path, a
    ``file://`` URI or an ``s3://bucket/prefix`` location; default ``./var``."""
    home = as_path(os.environ.get("KD_HOME", "var"))
    return home if isinstance(home, S3Path) else Path(home).resolve()


def local_dir() -> Path:
    """What never leaves this machine: ``$KD_LOCAL_DIR``, default ``KD_HOME`` itself when it is local,
    else ``./var``. The embedded SQLite warehouse and the worker cache live here (and, in the Makefile,
    ``AIRFLOW_HOME`` and the logs)."""
    raw = os.environ.get("KD_LOCAL_DIR")
    if raw:
        return Path(raw).resolve()
    home = kd_home()
    return Path("var").resolve() if isinstance(home, S3Path) else home


def cache_dir() -> Path:
    """This worker's cache of things derived from content-versioned inputs (an int8 teacher, local copies
    of teachers and models of an object-store home): ``$KD_CACHE_DIR``, default ``local_dir()/cache``.
    Safe to delete; rebuilt on use."""
    raw = os.environ.get("KD_CACHE_DIR")
    return Path(raw).resolve() if raw else local_dir() / "cache"
