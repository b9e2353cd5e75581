"""Content-addressed photo storage: one interface (:class:`PhotoStore`), two backends.

:class:`LocalPhotoStore` (the default): files ``<root>/<sha256[:2]>/<sha256>``, never
overwritten. :class:`serve.photostore_s3.S3PhotoStore`: objects in an S3-compatible bucket.
:func:`open_photo_store` picks one from the settings (``photo_store``: an ``s3://`` URL, else
``photo_dir``). Keys are the sha256 of the bytes; both backends check it on every read.

Local: a photo is written to a temporary file in its final folder, flushed and fsynced, then
linked to its final name (``os.link`` fails rather than replace an existing file) and the
folder is fsynced: once :meth:`LocalPhotoStore.put` returns, the photo survives a crash. The
same bytes are stored once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from vision.errors import PhotogradeError

log = logging.getLogger("photograde.photostore")

if TYPE_CHECKING:
    from starlette.responses import Response

    from serve.settings import Settings

_SHA = re.compile(r"^[0-9a-f]{64}$")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    """``digest`` if it is a sha256 hex digest (a store key), else ValueError."""
    if not _SHA.match(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return digest


class PhotoStoreError(PhotogradeError):
    """The photo store is misconfigured or refused a request."""


class PhotoStoreUnavailable(PhotoStoreError):
    """The photo store failed a request it should have served (an S3 server's error or
    timeout): nothing the caller did wrong; a retry may succeed."""


class PhotoCorrupt(PhotogradeError):
    """A stored photo's bytes do not hash to its key (bit rot, tampering, a torn copy)."""

    def __init__(self, where: str, digest: str, actual: str):
        super().__init__(f"{where}: stored photo is corrupt: sha256 {actual}, expected {digest}")


def verified(data: bytes, digest: str, where: str) -> bytes:
    """``data`` if its sha256 is ``digest``, else PhotoCorrupt."""
    actual = sha256(data)
    if actual != digest:
        raise PhotoCorrupt(where, digest, actual)
    return data


@runtime_checkable
class PhotoStore(Protocol):
    """Photos by sha256: stored once, never overwritten, checked on read."""

    def put(self, data: bytes) -> str:
        """Store ``data`` durably; returns its sha256 (the key). Idempotent."""
        ...

    def get(self, digest: str) -> bytes:
        """The photo's bytes (FileNotFoundError: absent; PhotoCorrupt: hash mismatch)."""
        ...

    def exists(self, digest: str) -> bool:
        ...

    def local_path(self, digest: str) -> Path | None:
        """The photo's file when the store is a local folder (to link or stream), else None."""
        ...


def media_type(data: bytes) -> str:
    """The image type from the first bytes (uploads are decoded, hence checked, before)."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"heim"):
        return "image/heic"
    return "application/octet-stream"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalPhotoStore:
    """Photos by sha256 under one root folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        check_digest(digest)
        return self.root / digest[:2] / digest

    def local_path(self, digest: str) -> Path | None:
        return self.path(digest)

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put(self, data: bytes) -> str:
        """Store ``data`` durably (fsync, atomic link, folder fsync); returns its sha256."""
        digest = sha256(data)
        final = self.path(digest)
        if final.is_file() and final.stat().st_size == len(data):
            return digest
        folder = final.parent
        if not folder.is_dir():
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)  # the store too: private
            folder.mkdir(mode=0o700, exist_ok=True)
            _fsync_dir(folder.parent)
        tmp = folder / f".{digest}.{uuid.uuid4().hex}.tmp"
        # private to the service's user: photos of customers' devices are not world-readable
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, final)
        except FileExistsError:
            if final.stat().st_size != len(data):  # a torn file cannot be: links are atomic
                raise OSError(f"{final}: exists with a different size") from None
        finally:
            tmp.unlink()
        _fsync_dir(folder)
        return digest

    def get(self, digest: str) -> bytes:
        path = self.path(digest)
        return verified(path.read_bytes(), digest, str(path))

    def __repr__(self) -> str:
        return f"LocalPhotoStore({str(self.root)!r})"


def put_all(store: PhotoStore, photos: Iterable[bytes]) -> list[str]:
    """Store every photo durably; their digests. A failing store (a full or unwritable disk,
    an S3 server's error) is :class:`~serve.problems.StorageUnavailable` (503, retry): the
    photos are stored before anything refers to them, so nothing is lost and a retry with the
    same ``Idempotency-Key`` is safe."""
    try:
        return [store.put(data) for data in photos]
    except (OSError, PhotoStoreUnavailable) as e:
        raise _unavailable(store, e, "nothing was stored, ") from None


def _unavailable(store: PhotoStore, error: Exception, done: str = "") -> Exception:
    """The 503 (retry) answering a failing store: its cause is logged, not shown."""
    from serve.problems import StorageUnavailable

    log.error("photo store %r: %s", store, error)
    return StorageUnavailable(f"the photo store is unavailable; {done}retry shortly",
                              headers={"Retry-After": "5"})


def open_photo_store(settings: Settings) -> PhotoStore:
    """The store the settings name: ``photo_store`` (``s3://bucket/prefix``) when set, else
    the local folder ``photo_dir``."""
    if settings.photo_store:
        from serve.photostore_s3 import S3PhotoStore
        return S3PhotoStore.from_settings(settings)
    return LocalPhotoStore(settings.photo_dir)


def photo_response(store: PhotoStore, digest: str, media: str,
                   headers: dict[str, str]) -> Response:
    """The photo as an HTTP response: the file streamed from a local store, else its bytes
    (read and checked against the key)."""
    from starlette.responses import FileResponse, Response

    path = store.local_path(digest)
    if path is not None:
        return FileResponse(path, media_type=media, headers=headers)
    try:
        return Response(store.get(digest), media_type=media, headers=headers)
    except PhotoStoreUnavailable as e:
        raise _unavailable(store, e) from None
