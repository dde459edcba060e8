"""The database object the store's repositories share: its engines, the error guard,
write transactions and the online path's fast reads.

SQLite (a file) is the embedded default; PostgreSQL is selected by URL. The
repositories (:mod:`~sleeptime.store.contexts`, :mod:`~sleeptime.store.artifacts`,
:mod:`~sleeptime.store.ledger`, ...) hold the SQL of one concern each and reach the
database only through this object.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy import text as sql_text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from sleeptime.errors import InvalidInput, StoreUnavailable
from sleeptime.redact import redact_text, redact_url, redacted_cause
from sleeptime.store import migrate

_ADVISORY_LOCK = sql_text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


class Database:
    """Engines and sessions over one database URL. Thread-safe; cheap to share."""

    def __init__(self, url: str) -> None:
        if not isinstance(url, str) or not url.strip():
            raise InvalidInput(
                f"database URL must be a non-empty string, not {type(url).__name__} "
                "(e.g. sqlite:///sleeptime.db or postgresql+psycopg://user@host/db)"
            )
        url = self.url = sqlalchemy_url(url)
        kwargs: dict[str, Any] = {"future": True}
        #: An in-memory SQLite database: it exists only on its one shared connection.
        self.in_memory = is_in_memory(url)
        #: Serializes every statement on an in-memory SQLite database (None otherwise).
        self._serial: threading.RLock | None = None
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            if self.in_memory:
                # One connection for every thread: SQLAlchemy's default for :memory:
                # gives each thread its own, i.e. its own empty database, so the k
                # parallel rethinks of a sleep found no tables. The shared connection
                # is used by one thread at a time (see guard).
                kwargs["poolclass"] = StaticPool
                self._serial = threading.RLock()
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine: Engine = create_engine(url, **kwargs)
        except ImportError as exc:  # the dialect's driver
            raise StoreUnavailable(_no_driver(url, exc)) from None
        except (SQLAlchemyError, ValueError) as exc:
            raise StoreUnavailable(
                f"bad database URL {redact_url(url)}: {redact_text(exc, url)}"
            ) from None
        self.dialect: str = self.engine.dialect.name
        #: The engine of the online path's one-statement reads and writes.
        self.online_engine: Engine
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            self.online_engine = self.engine
        else:
            # The online path's reads are single statements on immutable or monotonic
            # rows: on a server they run in autocommit, without a pre-ping, so each is
            # one round trip instead of four (ping, BEGIN, SELECT, ROLLBACK). A
            # connection the server dropped is detected by the read itself and the
            # read is retried once on a fresh one (see read).
            self.online_engine = create_engine(
                url, future=True, pool_pre_ping=False, isolation_level="AUTOCOMMIT"
            )
            if self.dialect == "postgresql":
                event.listen(self.online_engine, "connect", _no_wal_wait)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._sqlite_file: str | None = (
            self.engine.url.database if self.dialect == "sqlite" and not self.in_memory else None
        )
        #: On a SQLite file, the online path's writes (ledger rows, query-log batches)
        #: take turns in-process: SQLite admits one writer, and a writer that finds the
        #: file locked backs off in sleeps of up to 100 ms (its busy handler), which
        #: turned 8 concurrent answers into a 130 ms p99. Other processes still meet
        #: the busy handler.
        self.write_turn: threading.Lock | contextlib.nullcontext[None] = (
            threading.Lock() if self._sqlite_file is not None else contextlib.nullcontext()
        )
        self._local = threading.local()
        self._raw_conns: list[sqlite3.Connection] = []
        self._raw_lock = threading.Lock()

    # -- schema and life cycle --------------------------------------------------------

    def migrate(self) -> tuple[str | None, str]:
        """Bring the schema to the newest revision (Alembic; once, under a lock, however
        many processes start at once). Returns (revision before, revision after)."""
        with self.guard():
            return migrate.upgrade(self.engine)

    def schema_revision(self) -> str | None:
        """The database's schema revision (None: never migrated)."""
        with self.guard():
            return migrate.current(self.engine)

    def dispose(self) -> None:
        with self._raw_lock:
            for conn in self._raw_conns:
                conn.close()
            self._raw_conns.clear()
        self._local = threading.local()
        self.engine.dispose()
        self.online_engine.dispose()

    def ping(self) -> None:
        """One trivial read; raises StoreUnavailable when the database is down."""
        self.read(select(1))

    # -- transactions -----------------------------------------------------------------

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Runs database work: an unreachable database, or a connection the driver
        refuses to open (a bad option in the URL: ``?connect_timeout=abc``), becomes
        one StoreUnavailable with the URL's password redacted, its cause a redacted
        stand-in for the driver's error (and an in-memory database's one connection is
        taken by one thread at a time)."""
        try:
            if self._serial is None:
                yield
            else:
                with self._serial:
                    yield
        except DBAPIError as exc:
            # a statement's error (statement set) other than an outage is a bug: raised
            if not isinstance(exc, OperationalError) and exc.statement is not None:
                raise
            detail = redact_text(" ".join(str(exc.orig).split()), self.url)
            raise StoreUnavailable(
                f"database {redact_url(self.url)} unavailable: {detail}"
            ) from redacted_cause(exc, self.url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One write transaction (committed on leaving, rolled back on an error)."""
        with self.guard(), self._sessions.begin() as s:
            yield s

    def insert_ignore(self, s: Session, row: dict[str, Any], table: Any) -> bool:
        """INSERT that is a no-op when the primary key exists; True if a row was added."""
        if self.dialect == "sqlite":
            stmt: Any = sqlite.insert(table).values(**row).on_conflict_do_nothing()
        elif self.dialect == "postgresql":
            stmt = postgresql.insert(table).values(**row).on_conflict_do_nothing()
        else:  # generic fallback: savepoint + IntegrityError
            try:
                with s.begin_nested():
                    s.execute(table.insert().values(**row))
                return True
            except IntegrityError:
                return False
        # RETURNING, not rowcount: psycopg reports rowcount 1 for a skipped conflict
        key = next(iter(table.primary_key.columns))
        return s.execute(stmt.returning(key)).first() is not None

    def take_turns(self, s: Session, key: str) -> None:
        """On PostgreSQL, the transactions that name ``key`` take turns (a
        transaction-level advisory lock). SQLite needs none: it admits one writer."""
        if self.dialect == "postgresql":
            s.execute(_ADVISORY_LOCK, {"key": key})

    # -- the online path's reads ------------------------------------------------------

    def read(self, stmt: Any, params: dict[str, Any] | None = None) -> list[Any]:
        """Rows of one read on the online path (see ``online_engine``)."""
        with self.guard():
            for attempt in range(2):
                try:
                    with self.online_engine.connect() as conn:
                        return list(conn.execute(stmt, params or {}).all())
                except DBAPIError as exc:
                    if attempt or not exc.connection_invalidated:
                        raise
        raise AssertionError("unreachable")

    def read_row(self, stmt: Any, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """The first row of one indexed read made on every request (the current
        version, an API key). On a server: :meth:`read`. On a SQLite file: a
        connection of this thread's own outside the pool, since checkout, result proxy
        and rollback-on-return cost more than the read itself; a plain SELECT in WAL
        mode sees the latest commit."""
        if self._sqlite_file is None:
            rows = self.read(stmt, params)
            return tuple(rows[0]) if rows else None
        sql, names = _sqlite_form(stmt)
        conn = getattr(self._local, "conn", None)
        try:
            if conn is None:
                conn = sqlite3.connect(self._sqlite_file, check_same_thread=False, timeout=30)
                conn.execute("PRAGMA busy_timeout=30000")
                self._local.conn = conn
                with self._raw_lock:
                    self._raw_conns.append(conn)
            row: tuple[Any, ...] | None = conn.execute(
                sql, tuple(params[n] for n in names)
            ).fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(
                f"database {redact_url(self.url)} unavailable: {exc}; check the file and disk"
            ) from redacted_cause(exc, self.url)
        return row


@functools.cache
def _sqlite_form(stmt: Any) -> tuple[str, tuple[str, ...]]:
    """A statement compiled once for the sqlite3 module: its SQL and the order of its
    named parameters (the fast read speaks to sqlite3 directly)."""
    compiled = stmt.compile(dialect=sqlite.dialect())
    return str(compiled), tuple(compiled.positiontup or ())


def sqlalchemy_url(url: str) -> str:
    """A PostgreSQL URL as libpq and hosting providers write it (``postgres://``,
    ``postgresql://``) with the driver sleeptime installs: ``postgresql+psycopg://``.
    Any other URL (one that names its driver included) is returned unchanged."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    if sep and scheme.lower().startswith("postgres+"):  # postgres+DRIVER://
        return f"postgresql+{scheme.split('+', 1)[1]}://{rest}"
    return url


def _no_driver(url: str, exc: ImportError) -> str:
    """The one-line message for a database URL whose driver is not installed."""
    module = exc.name or redact_text(exc, url)
    if url.startswith("postgresql"):
        return (
            f"the PostgreSQL driver ({module}) is not installed, needed for "
            f'{redact_url(url)}: pip install "sleeptime[postgres]"'
        )
    return f"the database driver ({module}) for {redact_url(url)} is not installed: install it"


def is_in_memory(url: str) -> bool:
    """Whether ``url`` names an in-memory SQLite database (``sqlite://``,
    ``sqlite:///:memory:``, ``file::memory:`` or ``mode=memory`` URIs): the one check
    of it, for the store (one shared connection), workers (refused: each process would
    see its own empty database), KV blobs (a temporary folder) and the CLI."""
    if not url.startswith("sqlite"):
        return False
    try:
        database = make_url(url).database
    except ArgumentError:
        return False
    return (
        database in (None, "", ":memory:")
        or database.startswith("file::memory:")
        or "mode=memory" in database
    )


def _no_wal_wait(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("SET SESSION synchronous_commit TO OFF")
    cur.close()
    dbapi_conn.commit()  # a session setting, kept for the connection's life


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    # WAL is a property of the file: set it once. Switching needs an exclusive lock and
    # does not wait on the busy handler, so processes opening a fresh file together
    # (workers starting at once) retry instead of failing with "database is locked".
    for attempt in range(100):
        if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
            break
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break  # set (an in-memory database keeps its own mode)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.05)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
