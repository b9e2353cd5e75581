"""Content-addressed photo storage on disk: ``<root>/<sha256[:2]>/<sha256>``, never overwritten.

A photo is written to a temporary file in its final folder, flushed and fsynced, then linked to
its final name (``os.link`` fails rather than replace an existing file) and the folder is
fsynced: once :meth:`PhotoStore.put` returns, the photo survives a crash. The same bytes are
stored once.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

_SHA = re.compile(r"^[0-9a-f]{64}$")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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


class PhotoStore:
    """Photos by sha256 under one root folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        if not _SHA.match(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.root / digest[:2] / digest

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
        return self.path(digest).read_bytes()
