"""The S3 document store (AWS S3 or any S3-compatible server, e.g. s3rver in the tests).

Content is the object ``prefix/ab/abcd…`` (SHA-1 hex; the two-hex-digit level keeps listings and per-prefix
request rates spread), with user metadata ``sha1``. Guarantee: when ``put_file``/``put_bytes`` returns, S3 has
acknowledged the whole object, which by S3 semantics is durable and immediately readable; an object is never
visible partially written (a single PUT or a multipart upload appears only once complete). Large files are sent
as a multipart upload streamed from the spool file, so memory stays bounded (about ``max_concurrency`` x
``multipart_chunksize``) whatever the document size, and reads stream the GET body. Content already present
(HEAD before upload) is not sent again. Request bodies are spooled locally in ``spool_dir`` (default
``$TMPDIR/xdsi-spool``); ``put_file`` removes the spool file once the upload succeeded and leaves it in place
if it failed. Keys are checked to be 40 lower-case hex digits before they reach an object name.

Known difference from the filesystem store: deduplication does not refresh an object's LastModified (that would
take a server-side copy), so ``keys_older_than`` reports when content was first written; the orphan sweep must
check the ledger, not age alone.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from repository.store.base import (
    ReadChunks,
    StoredContent,
    StoreUnavailable,
    check_key,
    is_key,
    remove_stale_files,
)

MiB = 1 << 20

#: Query parameters ``from_url`` understands; anything else is refused (a misspelt option must not be ignored).
URL_PARAMS = frozenset(
    {
        "endpoint_url",
        "region",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "addressing_style",
        "spool_dir",
    }
)


def default_spool_dir() -> Path:
    return Path(tempfile.gettempdir()) / "xdsi-spool"


class S3Store:
    """Content-addressed document store in an S3 bucket (see the module docstring for guarantees).

    Parameters
    ----------
    client
        A boto3 S3 client (thread-safe; one per store).
    bucket, prefix
        Where the objects go: ``s3://bucket/prefix/ab/abcd…``. The bucket must exist (see :meth:`ensure_bucket`).
    spool_dir
        Local directory for request spool files.
    multipart_threshold, multipart_chunksize, max_concurrency
        Upload tuning; memory in flight is about ``max_concurrency * multipart_chunksize``.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        *,
        spool_dir: Path | None = None,
        multipart_threshold: int = 16 * MiB,
        multipart_chunksize: int = 8 * MiB,
        max_concurrency: int = 4,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.spool_dir = Path(spool_dir) if spool_dir is not None else default_spool_dir()
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=max_concurrency,
            use_threads=max_concurrency > 1,
        )

    @classmethod
    def from_url(cls, url: str) -> S3Store:
        """A store from ``s3://bucket/prefix?endpoint_url=http://127.0.0.1:4568&region=us-east-1``.

        Query parameters: ``endpoint_url`` (an S3-compatible server; path-style addressing is then the
        default), ``region``, ``addressing_style`` (``path``/``virtual``/``auto``), ``spool_dir``, and
        credentials ``aws_access_key_id``/``aws_secret_access_key``/``aws_session_token``. Without
        credentials in the URL, boto3's usual chain applies (environment, ``~/.aws``, instance role).
        """
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"not an S3 store URL (s3://bucket/prefix?...): {url!r}")
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = sorted(set(query) - URL_PARAMS)
        if unknown:
            raise ValueError(f"unknown S3 store URL parameter(s) {', '.join(unknown)}; known: {sorted(URL_PARAMS)}")
        endpoint_url = query.get("endpoint_url") or None
        addressing = query.get("addressing_style") or ("path" if endpoint_url else "auto")
        if addressing not in ("path", "virtual", "auto"):
            raise ValueError(f"addressing_style must be path, virtual or auto, got {addressing!r}")
        config = Config(
            s3={"addressing_style": addressing},
            retries={"max_attempts": 5, "mode": "standard"},
            # A Retrieve opens one GET per requested document before streaming them, and uploads use
            # max_concurrency connections each: more than botocore's default of 10.
            max_pool_connections=32,
            # Checksums only where S3 requires them: S3-compatible servers (s3rver among them) do not all
            # understand the trailing CRC checksums newer botocore sends by default.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=query.get("region") or None,
            aws_access_key_id=query.get("aws_access_key_id") or None,
            aws_secret_access_key=query.get("aws_secret_access_key") or None,
            aws_session_token=query.get("aws_session_token") or None,
            config=config,
        )
        spool = query.get("spool_dir")
        return cls(client, parts.netloc, unquote(parts.path), spool_dir=Path(spool) if spool else None)

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (demos and tests; production buckets are provisioned)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            if not _is_not_found(e):
                raise
            self.client.create_bucket(Bucket=self.bucket)

    def check_bucket(self) -> None:
        """Raise :class:`StoreUnavailable` naming the bucket and endpoint if the bucket does not exist or cannot
        be reached. The repository calls it at start-up: it never creates buckets, so a misspelt bucket name is
        a clear error at once, not a stray new bucket or a failure at the first submission."""
        where = f"S3 bucket {self.bucket!r} at {self.client.meta.endpoint_url}"
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                raise StoreUnavailable(f"{where} does not exist; create it before starting the repository "
                                       "(the repository does not create buckets)") from None
            raise StoreUnavailable(f"{where} is not accessible: {e}") from e
        except BotoCoreError as e:
            raise StoreUnavailable(f"{where} cannot be reached: {e}") from e

    def object_name(self, key: str) -> str:
        """The S3 object key holding the content of ``key``."""
        check_key(key)
        name = f"{key[:2]}/{key}"
        return f"{self.prefix}/{name}" if self.prefix else name

    # -- writing -------------------------------------------------------------------------------------------

    def put_file(self, path: Path, sha1: str, size: int) -> StoredContent:
        """Upload the complete spooled file ``path`` as ``sha1`` (computed by the caller while receiving it),
        then remove it. Durable on return. Raises ValueError (leaving ``path`` alone) if ``sha1`` is not a
        content key or the file's size is not ``size``; on an upload error ``path`` is left in place too."""
        name = self.object_name(sha1)
        actual = os.stat(path).st_size
        if actual != size:
            raise ValueError(f"spooled file {path} has {actual} bytes, expected {size}")
        if self._stored_size(name) != size:  # absent (None), or damaged: upload
            self.client.upload_file(
                str(path),
                self.bucket,
                name,
                ExtraArgs={"Metadata": {"sha1": sha1}, "ContentType": "application/octet-stream"},
                Config=self._transfer,
            )
        os.unlink(path)
        return StoredContent(sha1, size)

    def put_bytes(self, data: bytes) -> StoredContent:
        """Store ``data`` (inline documents) with one PUT, keyed by the SHA-1 computed here. Durable on return."""
        sha1 = hashlib.sha1(data).hexdigest()
        name = self.object_name(sha1)
        if self._stored_size(name) != len(data):
            self.client.put_object(
                Bucket=self.bucket,
                Key=name,
                Body=data,
                Metadata={"sha1": sha1},
                ContentType="application/octet-stream",
            )
        return StoredContent(sha1, len(data))

    # -- reading -------------------------------------------------------------------------------------------

    def exists(self, key: str) -> bool:
        return self._stored_size(self.object_name(key)) is not None

    def size(self, key: str) -> int:
        size = self._stored_size(self.object_name(key))
        if size is None:
            raise KeyError(key)
        return size

    def iter_chunks(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The content, streamed from the GET body in chunks of at most ``chunk_size`` bytes. The GET is sent
        now, so an absent key raises KeyError here and not at the first chunk."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.object_name(key))
        except ClientError as e:
            if _is_not_found(e):
                raise KeyError(key) from None
            raise
        # botocore's StreamingBody reads from the socket as asked and checks the byte count against
        # Content-Length at the end, so a cut connection raises instead of ending the stream early.
        return ReadChunks(response["Body"], chunk_size)

    # -- deleting and housekeeping -------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.object_name(key))

    def keys_older_than(self, seconds: float) -> Iterator[str]:
        """Keys of objects under the prefix whose LastModified is more than ``seconds`` ago. Other objects
        (names that are not ``ab/<sha1>``) are ignored."""
        cutoff = datetime.fromtimestamp(time.time() - seconds, tz=UTC)
        list_prefix = f"{self.prefix}/" if self.prefix else ""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=list_prefix):
            for obj in page.get("Contents", ()):
                rest = obj["Key"][len(list_prefix):]
                shard, _, key = rest.partition("/")
                if is_key(key) and shard == key[:2] and obj["LastModified"] < cutoff:
                    yield key

    def cleanup_spool(self, older_than_seconds: float) -> int:
        """Remove local spool files older than ``older_than_seconds`` (crashed requests); returns how many."""
        return remove_stale_files(self.spool_dir, older_than_seconds)

    # -- helpers -------------------------------------------------------------------------------------------

    def _stored_size(self, name: str) -> int | None:
        """ContentLength of object ``name`` (HEAD), or None if absent."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=name)
        except ClientError as e:
            if _is_not_found(e):
                return None
            raise
        return int(head["ContentLength"])


def _is_not_found(e: ClientError) -> bool:
    """Whether an error means "no such object". A missing bucket is a configuration error and is not one,
    except on HEAD, whose 404 carries no body to tell the two apart."""
    code = str(e.response.get("Error", {}).get("Code", ""))
    if code == "NoSuchBucket":
        return False
    status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("404", "NoSuchKey", "NotFound") or status == 404
