"""`orgs`, `tokens` and `access`: administer organizations, API keys and the access store's schema.

Each command works on the store the settings name: PROXY_ACCESS_DATABASE_URL's PostgreSQL, else
the SQLite file in PROXY_DATA_DIR.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from proxy.access.migrations import latest_version
from proxy.access.store import AccessStore, AccessStoreError, KeyInfo, open_access_store
from proxy.errors import AccessStoreUnavailable
from proxy.runtime.data_dir import prepare_data_dir
from proxy.settings import SettingsError, load_settings


@contextmanager
def _store() -> Iterator[AccessStore]:
    """The configured store; its refusals and failures as the command's error message."""
    try:
        settings = load_settings()
        if not settings.access_database_url:
            prepare_data_dir(settings)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    store = open_access_store(settings)
    try:
        yield store
    except AccessStoreError as exc:
        raise click.ClickException(str(exc)) from exc
    except AccessStoreUnavailable as exc:
        raise click.ClickException(f"{exc.detail} ({exc.__cause__})") from exc
    finally:
        store.close()


@click.group()
def orgs() -> None:
    """Organizations whose sessions can be reported on."""


@orgs.command("add")
@click.argument("organization_id")
@click.option("--name", default="", help="Human-readable name.")
def add_organization(organization_id: str, name: str) -> None:
    """Register an organization by its UUID."""
    with _store() as store:
        store.add_organization(organization_id, name)
    click.echo(f"added organization {organization_id}")


@orgs.command("list")
def list_organizations() -> None:
    """Print every organization: id, name, created."""
    with _store() as store:
        for org in store.list_organizations():
            click.echo(f"{org.id}\t{org.name}\t{org.created_at.isoformat()}")


@click.group()
def tokens() -> None:
    """API keys: create, list, revoke."""


@tokens.command("create")
@click.option("--org", "org_ids", multiple=True, required=True, help="Organization UUID.")
@click.option("--name", default="", help="What the key is for.")
def create_key(org_ids: tuple[str, ...], name: str) -> None:
    """Create a key granted to the organizations; prints it once, as the last line."""
    with _store() as store:
        key = store.create_key(org_ids, name)
    click.echo("store this key now: it cannot be shown again", err=True)
    click.echo(key)


@tokens.command("list")
def list_keys() -> None:
    """Print every key: id, name, organizations, created, status (never the key)."""
    with _store() as store:
        for key in store.list_keys():
            click.echo(_key_line(key))


@tokens.command("revoke")
@click.argument("key_id")
def revoke_key(key_id: str) -> None:
    """Revoke a key; every worker of every host refuses it from the next request on."""
    with _store() as store:
        store.revoke_key(key_id)
    click.echo(f"revoked key {key_id}")


def _key_line(key: KeyInfo) -> str:
    status = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "active"
    orgs = ",".join(key.organizations)
    return f"{key.id}\t{key.name}\t{orgs}\t{key.created_at.isoformat()}\t{status}"


@click.group()
def access() -> None:
    """The access store itself."""


@access.command()
def migrate() -> None:
    """Apply the schema migrations the store lacks (each service worker also does on first use)."""
    with _store() as store:
        applied = store.migrate()
        kind = store.kind
    done = f"applied {', '.join(map(str, applied))}" if applied else "nothing to apply"
    click.echo(f"{kind} access store at schema version {latest_version(kind)} ({done})")
