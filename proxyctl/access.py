"""`orgs` and `tokens`: administer organizations and API keys in the access store."""

from __future__ import annotations

import click

from proxy.access.store import AccessStore, AccessStoreError, KeyInfo
from proxy.runtime.data_dir import prepare_data_dir
from proxy.settings import SettingsError, load_settings


def _store() -> AccessStore:
    try:
        settings = load_settings()
        prepare_data_dir(settings)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    return AccessStore(settings.access_db_path)


@click.group()
def orgs() -> None:
    """Organizations whose sessions can be reported on."""


@orgs.command("add")
@click.argument("organization_id")
@click.option("--name", default="", help="Human-readable name.")
def add_organization(organization_id: str, name: str) -> None:
    """Register an organization by its UUID."""
    try:
        _store().add_organization(organization_id, name)
    except AccessStoreError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"added organization {organization_id}")


@orgs.command("list")
def list_organizations() -> None:
    """Print every organization: id, name, created."""
    for org in _store().list_organizations():
        click.echo(f"{org.id}\t{org.name}\t{org.created_at.isoformat()}")


@click.group()
def tokens() -> None:
    """API keys: create, list, revoke."""


@tokens.command("create")
@click.option("--org", "org_ids", multiple=True, required=True, help="Organization UUID.")
@click.option("--name", default="", help="What the key is for.")
def create_key(org_ids: tuple[str, ...], name: str) -> None:
    """Create a key granted to the organizations; prints it once, as the last line."""
    try:
        key = _store().create_key(org_ids, name)
    except AccessStoreError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("store this key now: it cannot be shown again", err=True)
    click.echo(key)


@tokens.command("list")
def list_keys() -> None:
    """Print every key: id, name, organizations, created, status (never the key)."""
    for key in _store().list_keys():
        click.echo(_key_line(key))


@tokens.command("revoke")
@click.argument("key_id")
def revoke_key(key_id: str) -> None:
    """Revoke a key; every worker refuses it from the next request on."""
    try:
        _store().revoke_key(key_id)
    except AccessStoreError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"revoked key {key_id}")


def _key_line(key: KeyInfo) -> str:
    status = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "active"
    orgs = ",".join(key.organizations)
    return f"{key.id}\t{key.name}\t{orgs}\t{key.created_at.isoformat()}\t{status}"
