"""Database access: engines for SQLite (default, embedded) or PostgreSQL, sessions, migrations.

SQLite runs in WAL mode with ``synchronous=FULL`` (a committed transaction survives a crash or a
power cut) and ``foreign_keys=ON``; write transactions start with ``BEGIN IMMEDIATE`` so
concurrent writers queue on the lock (``busy_timeout``) instead of failing. PostgreSQL sessions
use UTC. ``migrate()`` runs Alembic's ``upgrade head`` (``serve/migrations``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

log = logging.getLogger("photograde.db")
MIGRATIONS = Path(__file__).parent / "migrations"
_PG_MIGRATION_LOCK = 0x70676D67  # advisory lock: one process migrates at a time


def _sqlite_engine(url: str, begin: str, memory: bool) -> Engine:
    kw: dict = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    if memory:
        kw["poolclass"] = StaticPool
    engine = create_engine(url, **kw)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # the driver's own BEGIN is replaced below
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:
        conn.exec_driver_sql(begin)

    return engine


class Database:
    """A database URL turned into a write engine, a read engine and their sessions."""

    def __init__(self, url: str):
        self.url = make_url(url)
        self.dialect = self.url.get_backend_name()
        if self.dialect == "sqlite":
            database = self.url.database or ""
            memory = database in ("", ":memory:")
            if not memory:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
                # created private (SQLite gives its -wal and -shm files the same mode)
                os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))
            self.engine = _sqlite_engine(url, "BEGIN IMMEDIATE", memory)
            self.read_engine = (self.engine if memory else
                                _sqlite_engine(url, "BEGIN", memory))
        else:
            args = {"options": "-c timezone=UTC"} if self.dialect == "postgresql" else {}
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=10,
                                        max_overflow=20, connect_args=args)
            self.read_engine = self.engine
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        self._read = sessionmaker(self.read_engine, expire_on_commit=False)
        # An in-memory SQLite database is one connection (StaticPool) shared by every thread:
        # its transactions take turns, or two threads would nest a BEGIN in the other's.
        memory_db = self.dialect == "sqlite" and (self.url.database or "") in ("", ":memory:")
        self._turns: contextlib.AbstractContextManager = (
            threading.RLock() if memory_db else contextlib.nullcontext())

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in a write transaction, committed on success (durable before returning)."""
        with self._turns, self._write() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._turns, self._read() as session, session.begin():
            yield session

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` with Alembic (safe to run from several workers)."""
        cfg = alembic_config()
        logging.getLogger("alembic").setLevel(logging.WARNING)
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            before = MigrationContext.configure(conn).get_current_revision()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            after = MigrationContext.configure(conn).get_current_revision()
        if before != after:
            log.info("database %s migrated from %s to %s",
                     self.url.render_as_string(hide_password=True), before or "empty", after)

    def dispose(self) -> None:
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()


def alembic_config(url: str | None = None) -> Config:
    """Alembic's config, built in code (no alembic.ini): ``script_location`` is the package's
    ``migrations`` folder."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg
