"""Fixtures the service's tests share."""

from __future__ import annotations

import pytest

from serve.db import Database
from tests.support import DB_KINDS, STORE_KINDS, database_url, photo_store


@pytest.fixture(params=DB_KINDS)
def db(request, tmp_path):
    """A migrated workflow database of each kind (SQLite; PostgreSQL when configured)."""
    with database_url(request.param, tmp_path) as url:
        d = Database(url)
        d.migrate()
        yield d
        d.dispose()


@pytest.fixture(params=STORE_KINDS)
def store(request, tmp_path):
    """An empty photo store of each backend (a local folder; S3 when configured)."""
    return photo_store(request.param, tmp_path)
