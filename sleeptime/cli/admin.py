"""``sleeptime keys`` (the HTTP server's API keys) and ``sleeptime db`` (the schema)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from sleeptime.cli.common import (
    DbOpt,
    JsonOpt,
    app,
    console,
    err,
    open_client,
    print_table,
    require_database,
)
from sleeptime.errors import InvalidInput
from sleeptime.redact import redact_url
from sleeptime.settings import Settings

keys_app = typer.Typer(help="API keys of the HTTP server (`sleeptime serve`).")
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    namespace: Annotated[
        str | None, typer.Argument(help="the namespace the key opens (omit with --admin)")
    ] = None,
    admin: Annotated[
        bool, typer.Option("--admin", help="a key for every namespace and the operator routes")
    ] = False,
    database_url: DbOpt = None,
) -> None:
    """Create a key and print it once (the last line); only its hash is stored."""
    from sleeptime.server.auth import create_key

    if admin and namespace:
        raise InvalidInput("an admin key opens every namespace: give --admin or NAMESPACE")
    client = open_client("fake", database_url)
    key_id, key = create_key(client.store, namespace, admin=admin)
    client.close()
    scope = "admin (every namespace, operator routes)" if admin else f"namespace {namespace}"
    err.print(f"key {key_id} for {scope}; it is shown once, store it now:")
    print(key)


@keys_app.command("list")
def keys_list(as_json: JsonOpt = False, database_url: DbOpt = None) -> None:
    """Key ids and their namespaces (never the keys)."""
    client = open_client("fake", database_url, existing=True)
    rows = client.store.api_keys()
    client.close()
    if as_json:
        out = [{"key_id": k, "namespace": ns, "admin": a} for k, ns, a in rows]
        print(json.dumps(out, indent=2))
        return
    table = Table("key id", "namespace", "admin")
    for k, ns, a in rows:
        table.add_row(k, ns or "*", "yes" if a else "")
    print_table(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="a key id from `sleeptime keys list`")],
    database_url: DbOpt = None,
) -> None:
    """Revoke a key: requests with it get 401 from then on."""
    client = open_client("fake", database_url, existing=True)
    revoked = client.store.revoke_api_key(key_id)
    client.close()
    if not revoked:
        raise InvalidInput(f"no key {key_id!r}: see `sleeptime keys list`")
    console.print(f"key {key_id} revoked")


db_app = typer.Typer(help="The SQL schema: `db upgrade` applies its migrations (Alembic).")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(database_url: DbOpt = None) -> None:
    """Bring the schema to the newest revision (also done on start; safe to run from
    many processes at once)."""
    from sleeptime.store.sql import SQLStore

    url = database_url or Settings().database_url
    store = SQLStore(url, create=False)
    before, after = store.migrate()
    store.dispose()
    console.print(f"{redact_url(url)}: {before or '(unversioned)'} -> {after}", highlight=False)


@db_app.command("current")
def db_current(database_url: DbOpt = None) -> None:
    """Print the schema revision of the database and the newest one this version ships."""
    from sleeptime.store import migrate
    from sleeptime.store.sql import SQLStore

    url = database_url or Settings().database_url
    require_database(url)
    store = SQLStore(url, create=False)
    revision = store.schema_revision()
    store.dispose()
    console.print(
        f"{redact_url(url)}: revision {revision or '(none)'}, newest {migrate.head()}",
        highlight=False,
    )
