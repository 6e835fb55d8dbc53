"""S3-compatible object storage backend: ``s3://bucket/prefix``.

Endpoint, region, credentials and addressing style come from the usual places, through
botocore: ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` (/ ``AWS_SESSION_TOKEN``), ``AWS_DEFAULT_REGION``, ``AWS_PROFILE``
and the AWS config files; URL parameters override them: ``endpoint=``, ``region=``,
``addressing=path|virtual``, ``profile=``, ``timeout=`` (seconds per request, default 30),
``retries=`` (attempts per request, default ``MAX_ATTEMPTS``). A missing bucket is created
when the credentials allow it; otherwise opening fails with a clear error.

Every object is one PUT (packs are a few MiB; objects above ``MULTIPART_THRESHOLD`` go as a
multipart upload). Throttling, 5xx and connection errors are retried with exponential
backoff and jitter (botocore's "standard" retry mode, ``MAX_ATTEMPTS``). Error messages
name the bucket, key and S3 error code, never credentials. Client: boto3 (see
docs/design.md, "S3 backend", for the measurement behind the choice).
"""

from __future__ import annotations

import bisect
import io
import os
import threading
from collections.abc import Iterator, Sequence
from typing import IO, Any
from urllib.parse import parse_qs, unquote, urlsplit

from ocibv.engine.backends.base import Backend, ObjectInfo, validate_key, validate_prefix
from ocibv.engine.errors import BackendError, ObjectNotFound

MAX_ATTEMPTS = 8
MULTIPART_THRESHOLD = 64 * 1024 * 1024
MULTIPART_CHUNK = 16 * 1024 * 1024
_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}

_clients: dict[tuple[Any, ...], Any] = {}
_ready_buckets: set[tuple[Any, ...]] = set()
_lock = threading.Lock()


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", type(exc).__name__))


def _client(endpoint: str | None, region: str | None, addressing: str | None,
            profile: str | None, timeout: float, attempts: int) -> Any:
    key = (endpoint, region, addressing, profile, timeout, attempts)
    with _lock:
        client = _clients.get(key)
        if client is not None:
            return client
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(profile_name=profile, region_name=region)
        config = Config(
            retries={"max_attempts": attempts, "mode": "standard"},
            max_pool_connections=64,
            connect_timeout=timeout,
            read_timeout=timeout,
            s3={"addressing_style": addressing or "auto"},
            region_name=region or session.region_name or "us-east-1",
        )
        client = session.client("s3", endpoint_url=endpoint, config=config)
        _clients[key] = client
        return client


class _PartsReader(io.RawIOBase):
    """A seekable read-only stream over ``parts`` (botocore reads a body to checksum it,
    rewinds, and rewinds again to retry)."""

    def __init__(self, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        self._parts = [memoryview(p) for p in parts if len(p)]
        self._starts: list[int] = []
        total = 0
        for part in self._parts:
            self._starts.append(total)
            total += len(part)
        self.size = total
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        written = 0
        index = bisect.bisect_right(self._starts, self._pos) - 1
        while written < len(out) and 0 <= index < len(self._parts) and self._pos < self.size:
            part = self._parts[index]
            inner = self._pos - self._starts[index]
            n = min(len(part) - inner, len(out) - written)
            out[written : written + n] = part[inner : inner + n]
            written += n
            self._pos += n
            index += 1
        return written


class S3Backend(Backend):
    """Objects under ``prefix/`` of an S3 bucket. Thread-safe (boto3 clients are)."""

    conditional_put = True
    remote = True

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if not parts.netloc:
            raise BackendError(f"S3 URL must name a bucket: s3://bucket/prefix (got {url!r})")
        self._bucket = parts.netloc
        self._prefix = unquote(parts.path).strip("/")
        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        endpoint = params.get("endpoint") or os.environ.get("AWS_ENDPOINT_URL_S3") or (
            os.environ.get("AWS_ENDPOINT_URL")
        )
        self._url = f"s3://{self._bucket}/{self._prefix}".rstrip("/")
        self._query = parts.query
        try:
            timeout = float(params.get("timeout", "30"))
            attempts = int(params.get("retries", str(MAX_ATTEMPTS)))
        except ValueError:
            raise BackendError(f"bad timeout= or retries= in {self._url}") from None
        self._s3 = _client(endpoint, params.get("region"), params.get("addressing"),
                           params.get("profile"), timeout, attempts)
        self._ensure_bucket((endpoint, self._bucket))

    @property
    def url(self) -> str:
        return f"{self._url}?{self._query}" if self._query else self._url

    def _ensure_bucket(self, key: tuple[Any, ...]) -> None:
        if key in _ready_buckets:
            return
        try:
            self._s3.head_bucket(Bucket=self._bucket)
        except Exception as exc:
            if _code(exc) not in _NOT_FOUND:
                raise BackendError(
                    f"cannot reach S3 bucket {self._bucket}: {_code(exc)}"
                ) from None
            try:
                region = self._s3.meta.region_name
                if region and region != "us-east-1":
                    self._s3.create_bucket(
                        Bucket=self._bucket,
                        CreateBucketConfiguration={"LocationConstraint": region},
                    )
                else:
                    self._s3.create_bucket(Bucket=self._bucket)
            except Exception as exc2:
                if _code(exc2) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise BackendError(
                        f"S3 bucket {self._bucket} does not exist and could not be created "
                        f"({_code(exc2)}): create it or grant s3:CreateBucket"
                    ) from None
        with _lock:
            _ready_buckets.add(key)

    def _key(self, key: str) -> str:
        validate_key(key)
        return f"{self._prefix}/{key}" if self._prefix else key

    def _fail(self, what: str, key: str, exc: Exception) -> BackendError:
        code = _code(exc)
        if code in _NOT_FOUND or code == "NoSuchKey":
            return ObjectNotFound(f"no object {key}")
        return BackendError(f"S3 {what} of {key} in bucket {self._bucket} failed: {code}")

    def put(self, key: str, data: bytes) -> None:
        self.put_parts(key, (data,))

    def put_parts(self, key: str, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        full = self._key(key)
        body = _PartsReader(parts)  # no joined copy of a pack in memory
        try:
            if body.size > MULTIPART_THRESHOLD:
                from boto3.s3.transfer import TransferConfig

                self._s3.upload_fileobj(
                    body, self._bucket, full,
                    Config=TransferConfig(multipart_threshold=MULTIPART_THRESHOLD,
                                          multipart_chunksize=MULTIPART_CHUNK),
                )
            else:
                self._s3.put_object(Bucket=self._bucket, Key=full, Body=body,
                                    ContentLength=body.size)
        except Exception as exc:
            raise self._fail("put", key, exc) from None

    def put_file(self, key: str, file: IO[bytes], size: int) -> None:
        file.seek(0)
        full = self._key(key)
        try:
            if size > MULTIPART_THRESHOLD:
                from boto3.s3.transfer import TransferConfig

                self._s3.upload_fileobj(
                    file, self._bucket, full,
                    Config=TransferConfig(multipart_threshold=MULTIPART_THRESHOLD,
                                          multipart_chunksize=MULTIPART_CHUNK),
                )
            else:
                self._s3.put_object(Bucket=self._bucket, Key=full, Body=file.read(size),
                                    ContentLength=size)
        except Exception as exc:
            raise self._fail("put", key, exc) from None

    def put_if_absent(self, key: str, data: bytes) -> bool:
        try:
            self._s3.put_object(Bucket=self._bucket, Key=self._key(key), Body=data,
                                IfNoneMatch="*")
            return True
        except Exception as exc:
            if _code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise self._fail("conditional put", key, exc) from None

    def get(self, key: str) -> bytes:
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=self._key(key))
            return bytes(response["Body"].read())
        except Exception as exc:
            raise self._fail("get", key, exc) from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        try:
            response = self._s3.get_object(
                Bucket=self._bucket, Key=self._key(key),
                Range=f"bytes={offset}-{offset + length - 1}",
            )
            return bytes(response["Body"].read())
        except Exception as exc:
            if _code(exc) == "InvalidRange":
                return b""
            raise self._fail("ranged get", key, exc) from None

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def stat(self, key: str) -> ObjectInfo:
        try:
            head = self._s3.head_object(Bucket=self._bucket, Key=self._key(key))
        except Exception as exc:
            raise self._fail("head", key, exc) from None
        return ObjectInfo(size=int(head["ContentLength"]), mtime=head["LastModified"].timestamp())

    def delete(self, key: str) -> None:
        try:
            self._s3.delete_object(Bucket=self._bucket, Key=self._key(key))
        except Exception as exc:
            error = self._fail("delete", key, exc)
            if not isinstance(error, ObjectNotFound):
                raise error from None

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        base = f"{self._prefix}/" if self._prefix else ""
        paginator = self._s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self._bucket, Prefix=base + prefix):
                for item in page.get("Contents", ()):
                    yield item["Key"][len(base) :]
        except Exception as exc:
            raise BackendError(
                f"S3 list of {prefix or '/'} in bucket {self._bucket} failed: {_code(exc)}"
            ) from None

    def sync(self) -> None:
        return None  # a successful PUT is durable
