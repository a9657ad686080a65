"""Applies the numbered SQL migrations and sets the service role's privileges.

Runs as the owner role (`SENTINEL_ADMIN_DATABASE_URL`): creates the database and the service
role when missing, applies each pending `migrations/NNN_*.sql` in its own transaction under an
advisory lock, refuses to go on when an applied file has changed, then grants the service role
(`SENTINEL_DATABASE_URL`'s user) SELECT and INSERT on the ledger and nothing that rewrites it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg

# Arbitrary constant: only one migrator at a time per database.
_MIGRATION_LOCK_ID = 0x5E7715E1

APPEND_ONLY_TABLES = ("transactions", "journal_entries", "postings", "deposits",
                      "transaction_rule_hits", "rule_versions", "transaction_labels",
                      "webhook_replays", "webhook_attempts", "alert_mails")


class MigrationError(Exception):
    code = "migration_error"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("ledger").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration numbers in {versions}")
    return found


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def database_name(dsn: str) -> str:
    name = unquote(urlsplit(dsn).path.lstrip("/"))
    if not name:
        raise MigrationError(f"no database name in {dsn!r}")
    return name


async def ensure_database(admin_dsn: str) -> None:
    name = database_name(admin_dsn)
    conn = await asyncpg.connect(_with_database(admin_dsn, "postgres"))
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            try:
                await conn.execute(await conn.fetchval(
                    "SELECT format('CREATE DATABASE %I', $1::text)", name))
            except asyncpg.DuplicateDatabaseError:
                pass  # created concurrently by another migrator: that is what we wanted
    finally:
        await conn.close()


async def ensure_role(conn: asyncpg.Connection, app_dsn: str) -> str:
    parts = urlsplit(app_dsn)
    role = unquote(parts.username or "")
    if not role:
        raise MigrationError("SENTINEL_DATABASE_URL names no user for the service role")
    password = unquote(parts.password) if parts.password else None
    if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
        statement = await conn.fetchval(
            "SELECT format('CREATE ROLE %I LOGIN', $1::text)", role)
        try:
            await conn.execute(statement)
        except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
            pass  # created concurrently: roles are cluster-wide
    if password is not None:
        await conn.execute(await conn.fetchval(
            "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)", role, password))
    return role


async def _apply(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
        "name text NOT NULL, checksum text NOT NULL, "
        "applied_at timestamptz NOT NULL DEFAULT now())")
    applied = {r["version"]: r["checksum"]
               for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")}
    done = []
    for migration in migrations:
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version:03d}_{migration.name} changed after it was "
                    f"applied; add a new migration instead of editing an applied one")
            continue
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version, migration.name, migration.checksum)
        done.append(f"{migration.version:03d}_{migration.name}")
    return done


async def _grant(conn: asyncpg.Connection, role: str, database: str) -> None:
    quoted = await conn.fetchval("SELECT quote_ident($1::text)", role)
    db = await conn.fetchval("SELECT quote_ident($1::text)", database)
    ledger = ", ".join(APPEND_ONLY_TABLES)
    await conn.execute(f"""
        GRANT CONNECT ON DATABASE {db} TO {quoted};
        GRANT USAGE ON SCHEMA public TO {quoted};
        REVOKE ALL ON {ledger}, accounts, idempotency_keys, schema_migrations, rules,
            list_items, merchants, merchant_secrets, relay_cursors FROM {quoted};
        GRANT SELECT, INSERT ON {ledger} TO {quoted};
        -- ledger_post_payments numbers a batch's journal entries before writing them (008).
        GRANT USAGE ON SEQUENCE journal_entries_entry_id_seq TO {quoted};
        GRANT SELECT, INSERT ON accounts TO {quoted};
        GRANT UPDATE (balance_minor, posting_seq, posting_hash, txn_seq, txn_hash)
            ON accounts TO {quoted};
        GRANT SELECT, INSERT, DELETE ON idempotency_keys TO {quoted};
        GRANT SELECT, INSERT ON rules TO {quoted};
        GRANT SELECT, INSERT, DELETE ON list_items TO {quoted};
        GRANT SELECT ON schema_migrations TO {quoted};
        GRANT SELECT, INSERT ON merchants, merchant_secrets TO {quoted};
        GRANT UPDATE (name, category, webhook_url, delivery_enabled, disabled_reason,
            updated_at) ON merchants TO {quoted};
        GRANT UPDATE (expires_at) ON merchant_secrets TO {quoted};
        GRANT SELECT ON relay_cursors TO {quoted};
        GRANT UPDATE (txid, id, updated_at) ON relay_cursors TO {quoted};
    """)


async def migrate(admin_dsn: str, app_dsn: str) -> list[str]:
    """Bring the database up to date; returns the names of the migrations applied now."""
    await ensure_database(admin_dsn)
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
        try:
            role = await ensure_role(conn, app_dsn)
            done = await _apply(conn, load_migrations())
            await _grant(conn, role, database_name(admin_dsn))
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
    finally:
        await conn.close()
    return done


async def drop_database(admin_dsn: str) -> None:
    """Drop the database (tests only: each test run owns a fresh one)."""
    name = database_name(admin_dsn)
    conn = await asyncpg.connect(_with_database(admin_dsn, "postgres"))
    try:
        await conn.execute(await conn.fetchval(
            "SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', $1::text)", name))
    finally:
        await conn.close()
