"""Object storage: one small interface over S3 (boto3, any endpoint) and a local directory.

Keys are always relative to the store root and use ``/``. Writes are atomic from a reader's
point of view: S3 PUTs are atomic by nature, local writes go to a temporary file that is
renamed into place. Errors reaching the store raise :class:`StorageUnavailable` so that
Airflow retries the task; a missing key raises ``KeyError``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

from realness_tasks.config import local_store_path
from realness_tasks.settings import S3Settings

log = logging.getLogger(__name__)


class StorageUnavailable(RuntimeError):
    """The object store could not be reached; the task should fail and be retried."""


@dataclass(frozen=True)
class StoredObject:
    """One object of a listing: its key, size, etag and modification time."""

    key: str
    size: int
    etag: str
    modified: datetime
    problem: str | None = None  # set when the entry cannot be read as an object (a local symlink that is refused)


def loggable(key: str) -> str:
    """``key`` with control characters escaped (``\\n``), so a key cannot split or forge a log line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in key)


def safe_key(key: str) -> str:
    """Reject keys that would escape the store root (``..`` segments, absolute paths)."""
    parts = key.split("/")
    if key.startswith("/") or any(p in ("..", ".") for p in parts) or "\x00" in key:
        raise ValueError(f"unsafe object key: {key!r}")
    return key


class ObjectStore:
    """Common interface; ``uri_for`` gives the URI recorded in tables and shards."""

    root_uri: str

    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Every object under ``prefix``, recursively."""
        raise NotImplementedError

    def get_bytes(self, key: str) -> bytes:
        """The object's content."""
        raise NotImplementedError

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` as the object ``key``, replacing one there."""
        raise NotImplementedError

    def download(self, key: str, path: Path) -> None:
        """Copy the object to the local file ``path``."""
        raise NotImplementedError

    def upload(self, path: Path, key: str) -> None:
        """Copy the local file ``path`` to the object ``key``."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """Remove the object; no error when it is already gone."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        """Whether the object exists."""
        raise NotImplementedError

    def copy(self, src_key: str, dst_key: str) -> None:
        """Copy one object to another key."""
        self.put_bytes(dst_key, self.get_bytes(src_key))

    def move(self, src_key: str, dst_key: str) -> None:
        """Copy one object to another key, then remove the original."""
        self.copy(src_key, dst_key)
        self.delete(src_key)

    def uri_for(self, key: str) -> str:
        """The URI of ``key``, as tables and shards record it."""
        return f"{self.root_uri.rstrip('/')}/{key}"

    def key_for(self, uri: str) -> str:
        """The key of a URI inside this store; ValueError for a URI outside it."""
        root = self.root_uri.rstrip("/") + "/"
        if not uri.startswith(root):
            raise ValueError(f"{uri} is not inside {self.root_uri}")
        return uri[len(root):]

    def pyarrow_filesystem(self):
        """A pyarrow filesystem and base path, for reading Parquet datasets in place."""
        raise NotImplementedError


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask sets it to read it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class LocalStore(ObjectStore):
    """An object store in a local folder (``file://``), for one machine and the tests."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.root_uri = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = self.root / safe_key(key)
        if not path.resolve().is_relative_to(self.root):
            raise ValueError(f"unsafe object key: {key!r} leads outside the store root through a symbolic link")
        return path

    def _link_problem(self, path: Path) -> str | None:
        """Why a symbolic link is not followed: dangling, leaving the root, or a folder (None: a file inside the root)."""
        try:
            target = path.resolve(strict=True)
        except (FileNotFoundError, RuntimeError):
            return "dangling symbolic link"
        if not target.is_relative_to(self.root):
            return "symbolic link to a path outside the store root"
        if target.is_dir():
            return "symbolic link to a folder (not followed)"
        if not target.is_file():
            return "symbolic link to something that is not a regular file"
        return None

    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Every entry under ``prefix``, sorted by key; refused symbolic links come with ``problem`` set.

        Symbolic links are never followed into folders; a link to a file inside the root is read as
        that file. Temporary files of unfinished writes (``.<name>.tmp-*``) are listed like any other
        entry: readers skip hidden names and say so.
        """
        base = self.root / prefix if prefix else self.root
        start = base if base.is_dir() and not base.is_symlink() else base.parent
        if not start.exists():
            return
        found: list[StoredObject] = []
        for dirpath, dirnames, filenames in os.walk(start, followlinks=False):
            folder = Path(dirpath)
            for name in [*filenames, *(d for d in dirnames if (folder / d).is_symlink())]:
                path = folder / name
                key = path.relative_to(self.root).as_posix()
                if not key.startswith(prefix):
                    continue
                problem = self._link_problem(path) if path.is_symlink() else (
                    None if path.is_file() else "not a regular file")
                st = path.lstat() if problem else path.stat()
                found.append(StoredObject(key, 0 if problem else st.st_size,
                                          f"{'link-' if problem else ''}{st.st_size}-{st.st_mtime_ns}",
                                          datetime.fromtimestamp(st.st_mtime, timezone.utc), problem))
        yield from sorted(found, key=lambda o: o.key)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def _write_atomically(self, key: str, fill: Callable[[Path], object]) -> None:
        """Fill a temporary file beside the target, then rename it into place: readers see all or nothing."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
        os.close(fd)
        try:
            fill(Path(tmp))
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a shard must be readable as umask allows
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_bytes(self, key: str, data: bytes) -> None:
        self._write_atomically(key, lambda tmp: tmp.write_bytes(data))

    def download(self, key: str, path: Path) -> None:
        try:
            shutil.copyfile(self._path(key), path)
        except FileNotFoundError:
            raise KeyError(key) from None

    def upload(self, path: Path, key: str) -> None:
        self._write_atomically(key, lambda tmp: shutil.copyfile(path, tmp))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        try:
            return self._path(key).is_file()
        except ValueError:
            return False

    def pyarrow_filesystem(self):
        import pyarrow.fs

        return pyarrow.fs.LocalFileSystem(), str(self.root)


class S3Store(ObjectStore):
    """An object store in an S3 bucket (AWS, MinIO), with the configured timeouts and attempts."""

    def __init__(self, bucket: str, prefix: str, settings: S3Settings):
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.settings = settings
        self.root_uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.client = self._client(settings.read_timeout_s)            # list, head, small gets and puts
        self.transfer_client = self._client(settings.transfer_timeout_s)  # video downloads, model uploads

    def _client(self, read_timeout: float):
        import boto3
        from botocore.config import Config

        settings = self.settings
        return boto3.client(
            "s3",
            endpoint_url=settings.endpoint_url or None,
            region_name=settings.region,
            aws_access_key_id=settings.access_key_id or None,
            aws_secret_access_key=settings.secret_access_key or None,
            config=Config(connect_timeout=settings.connect_timeout_s, read_timeout=read_timeout,
                          retries={"total_max_attempts": settings.max_attempts, "mode": "standard"}),
        )

    def _key(self, key: str) -> str:
        return self.prefix + safe_key(key)

    def _call(self, fn, *args, **kwargs):
        from boto3.exceptions import RetriesExceededError, S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise KeyError(args[0] if args else kwargs.get("Key")) from None
            if code in ("NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise StorageUnavailable(f"S3 {self.root_uri}: {code}") from exc
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
                raise StorageUnavailable(f"S3 {self.root_uri}: {code}") from exc
            raise
        except BotoCoreError as exc:
            raise StorageUnavailable(f"S3 {self.root_uri} unreachable: {exc}") from exc
        except RetriesExceededError as exc:  # the transfer manager's: a download that stalled on every attempt
            raise StorageUnavailable(f"S3 {self.root_uri} unreachable: {exc.last_exception}") from exc
        except S3UploadFailedError as exc:
            raise StorageUnavailable(f"S3 {self.root_uri}: {exc}") from exc

    def list(self, prefix: str) -> Iterator[StoredObject]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call(lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)))
        for page in pages:
            for item in page.get("Contents", []):
                yield StoredObject(item["Key"][len(self.prefix):], item["Size"], item["ETag"].strip('"'),
                                   item["LastModified"])

    def get_bytes(self, key: str) -> bytes:
        # The body is read inside _call: a stream that hangs half-way is StorageUnavailable too.
        return self._call(lambda k: self.client.get_object(Bucket=self.bucket, Key=self._key(k))["Body"].read(), key)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call(lambda k: self.client.put_object(Bucket=self.bucket, Key=self._key(k), Body=data), key)

    def download(self, key: str, path: Path) -> None:
        # One transfer attempt, whose request makes REALNESS_S3_MAX_ATTEMPTS attempts (boto3 would repeat the
        # whole download 5 times over, each with its own retries: 20 stalls of transfer_timeout_s).
        from boto3.s3.transfer import TransferConfig

        once = TransferConfig(num_download_attempts=1)
        self._call(lambda k: self.transfer_client.download_file(self.bucket, self._key(k), str(path), Config=once),
                   key)

    def upload(self, path: Path, key: str) -> None:
        self._call(lambda k: self.transfer_client.upload_file(str(path), self.bucket, self._key(k)), key)

    def delete(self, key: str) -> None:
        self._call(lambda k: self.client.delete_object(Bucket=self.bucket, Key=self._key(k)), key)

    def exists(self, key: str) -> bool:
        try:
            self._call(lambda k: self.client.head_object(Bucket=self.bucket, Key=self._key(k)), key)
            return True
        except KeyError:
            return False

    def copy(self, src_key: str, dst_key: str) -> None:
        self._call(lambda k: self.client.copy_object(Bucket=self.bucket, Key=self._key(k),
                                                     CopySource={"Bucket": self.bucket, "Key": self._key(src_key)}),
                   dst_key)

    def pyarrow_filesystem(self):
        import pyarrow.fs

        endpoint = urlparse(self.settings.endpoint_url) if self.settings.endpoint_url else None
        fs = pyarrow.fs.S3FileSystem(
            access_key=self.settings.access_key_id, secret_key=self.settings.secret_access_key,
            region=self.settings.region,
            endpoint_override=endpoint.netloc if endpoint else None,
            scheme=endpoint.scheme if endpoint else "https",
        )
        return fs, f"{self.bucket}/{self.prefix}".rstrip("/")


def open_store(uri: str, s3: S3Settings | None = None) -> ObjectStore:
    """Open ``s3://bucket/prefix`` or ``file:///path`` (a bare path is taken as local)."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"S3 URI without a bucket: {uri}")
        return S3Store(parsed.netloc, parsed.path, s3 or S3Settings())
    if parsed.scheme in ("file", ""):
        return LocalStore(local_store_path(uri))
    raise ValueError(f"unsupported store URI {uri!r}: use s3://bucket/prefix or file:///path")
