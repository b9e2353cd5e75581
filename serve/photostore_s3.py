"""Photos in an S3-compatible bucket (AWS S3, SeaweedFS, MinIO, Ceph RGW...): object
``<prefix>/<sha256[:2]>/<sha256>``.

Durability: :meth:`S3PhotoStore.put` returns once the server acknowledged the object, i.e. on
whatever the server promises for an acknowledged PUT (S3: stored redundantly; a single
SeaweedFS volume server: its disk). Never overwritten: the PUT is conditional
(``If-None-Match: *``); a 412 answer means the key exists, and the existing object is read back
and checked. The upload carries its SHA-256 checksum (``x-amz-checksum-sha256``), so a server that
supports checksums rejects bytes damaged in transit; every read checks that the bytes hash to
the key (:class:`serve.photostore.PhotoCorrupt` otherwise).
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from serve.photostore import (
    PhotoStoreError,
    PhotoStoreUnavailable,
    check_digest,
    sha256,
    verified,
)

if TYPE_CHECKING:
    from serve.settings import Settings


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix without slashes at either end)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise PhotoStoreError(f"photo_store={url!r}: expected s3://bucket[/prefix]")
    return parts.netloc, parts.path.strip("/")


def _status(error: Exception) -> int | None:
    response = getattr(error, "response", None) or {}
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode")


class S3PhotoStore:
    """Photos by sha256 in one bucket under one prefix."""

    def __init__(self, url: str, *, client: Any = None, endpoint_url: str | None = None,
                 region: str | None = None, access_key_id: str | None = None,
                 secret_access_key: str | None = None):
        self.url = url
        self.bucket, self.prefix = parse_s3_url(url)
        if client is None:
            import boto3
            from botocore.config import Config
            # credentials: the arguments, else boto3's usual chain (AWS_ACCESS_KEY_ID and
            # AWS_SECRET_ACCESS_KEY, ~/.aws, an instance role); retries on throttling and 5xx
            client = boto3.session.Session().client(
                "s3", endpoint_url=endpoint_url, region_name=region,
                aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key,
                config=Config(retries={"max_attempts": 5, "mode": "standard"},
                              max_pool_connections=32))
        self.client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> S3PhotoStore:
        secret = settings.s3_secret_access_key
        return cls(settings.photo_store, endpoint_url=settings.s3_endpoint_url,
                   region=settings.s3_region, access_key_id=settings.s3_access_key_id,
                   secret_access_key=secret.get_secret_value() if secret else None)

    def key(self, digest: str) -> str:
        check_digest(digest)
        name = f"{digest[:2]}/{digest}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def _where(self, digest: str) -> str:
        return f"s3://{self.bucket}/{self.key(digest)}"

    def put(self, data: bytes) -> str:
        """Store ``data`` unless its key exists (conditional PUT); returns its sha256."""
        from botocore.exceptions import ClientError
        digest = sha256(data)
        checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
        for attempt in range(4):
            try:
                self.client.put_object(Bucket=self.bucket, Key=self.key(digest), Body=data,
                                       IfNoneMatch="*", ChecksumSHA256=checksum)
                return digest
            except ClientError as e:
                status = _status(e)
                if status == 412:  # the key exists: check it is whole and right
                    self.get(digest)
                    return digest
                if status != 409 or attempt == 3:  # 409: a concurrent PUT of it in flight
                    raise PhotoStoreUnavailable(f"{self._where(digest)}: PUT failed: {e}") from None
        raise AssertionError("unreachable")

    def get(self, digest: str) -> bytes:
        from botocore.exceptions import ClientError
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key(digest))["Body"]
            data = body.read()
        except ClientError as e:
            if _status(e) == 404:
                raise FileNotFoundError(self._where(digest)) from None
            raise PhotoStoreUnavailable(f"{self._where(digest)}: GET failed: {e}") from None
        return verified(data, digest, self._where(digest))

    def exists(self, digest: str) -> bool:
        from botocore.exceptions import ClientError
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(digest))
        except ClientError as e:
            if _status(e) == 404:
                return False
            raise PhotoStoreUnavailable(f"{self._where(digest)}: HEAD failed: {e}") from None
        return True

    def local_path(self, digest: str) -> Path | None:
        return None

    def __repr__(self) -> str:
        return f"S3PhotoStore({self.url!r})"
