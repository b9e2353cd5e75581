"""The photo-store contract, the same tests for each backend: the local folder and S3 (a real
SeaweedFS server from scripts/test-s3; skipped without PHOTOGRADE_TEST_S3_URL)."""

from __future__ import annotations

import threading

import pytest

from serve.photostore import LocalPhotoStore, PhotoCorrupt, PhotoStore, open_photo_store, sha256
from serve.photostore_s3 import PhotoStoreError, S3PhotoStore, parse_s3_url
from serve.settings import Settings, SettingsError, load_settings

JPEG = b"\xff\xd8\xff" + bytes(range(256)) * 40


def _overwrite_behind_its_back(store: PhotoStore, digest: str, data: bytes) -> None:
    """Replace a stored photo's bytes without the store (a disk fault, an operator)."""
    if isinstance(store, LocalPhotoStore):
        store.path(digest).write_bytes(data)
    else:
        assert isinstance(store, S3PhotoStore)
        store.client.put_object(Bucket=store.bucket, Key=store.key(digest), Body=data)


def test_put_get_exists_by_sha256(store):
    assert isinstance(store, PhotoStore)
    digest = store.put(JPEG)
    assert digest == sha256(JPEG)
    assert store.exists(digest) and store.get(digest) == JPEG
    absent = sha256(b"not stored")
    assert not store.exists(absent)
    with pytest.raises(FileNotFoundError):
        store.get(absent)


def test_keys_are_sha256_digests_only(store):
    for bad in ("../etc/passwd", "ab", sha256(b"x").upper(), sha256(b"x") + "/.."):
        with pytest.raises(ValueError):
            store.exists(bad)
        with pytest.raises(ValueError):
            store.get(bad)


def test_same_bytes_stored_once_and_never_overwritten(store):
    digest = store.put(JPEG)
    assert store.put(JPEG) == digest  # idempotent
    # a key holding other bytes is not overwritten by put: the mismatch is reported
    _overwrite_behind_its_back(store, digest, b"\xff\xd8\xff damaged")
    with pytest.raises((PhotoCorrupt, OSError)):
        store.put(JPEG)


def test_read_checks_integrity(store):
    digest = store.put(JPEG)
    _overwrite_behind_its_back(store, digest, JPEG[:-1] + b"\x00")
    with pytest.raises(PhotoCorrupt, match=digest):
        store.get(digest)


def test_concurrent_puts_of_the_same_photo(store):
    photos = [JPEG + bytes([i]) for i in range(4)]
    digests: list[str] = []
    errors: list[BaseException] = []

    def put(data: bytes) -> None:
        try:
            digests.append(store.put(data))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=put, args=(p,)) for p in photos * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(set(digests)) == sorted(sha256(p) for p in photos) and len(digests) == 16
    assert all(store.get(sha256(p)) == p for p in photos)


def test_factory_picks_the_backend_from_settings(tmp_path):
    assert isinstance(open_photo_store(Settings(photo_dir=tmp_path)), LocalPhotoStore)
    s3 = open_photo_store(Settings(photo_store="s3://bucket/some/prefix/",
                                   s3_endpoint_url="http://127.0.0.1:9", s3_region="eu-west-3"))
    assert isinstance(s3, S3PhotoStore) and (s3.bucket, s3.prefix) == ("bucket", "some/prefix")
    assert s3.key("a" * 64) == f"some/prefix/aa/{'a' * 64}"
    with pytest.raises(SettingsError, match="photo_store"):
        load_settings(photo_store="/var/photos")
    with pytest.raises(PhotoStoreError, match="s3://bucket"):
        parse_s3_url("s3:///no-bucket")
