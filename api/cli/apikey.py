"""``cdms apikey create|list|revoke``: bearer API keys (the key is shown once, stored hashed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from api.cli.common import app_engine, console, plain, utf8

if TYPE_CHECKING:
    from api.apikeys import ApiKey

app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)


@app.command("create")
def create(
    role: str = typer.Option(..., "--role", help="admin, analyst, service or customer."),
    customer: int | None = typer.Option(
        None, "--customer", help="The customer a customer key acts as."
    ),
    name: str | None = typer.Option(None, "--name", help="A label to recognise the key by."),
) -> None:
    """Create a key and print it once (only its sha256 is stored)."""
    from api.apikeys import create_key, validate_role

    validate_role(role, customer)  # before touching the database
    if name is not None:
        utf8(name, "--name")
    key, secret = create_key(app_engine(), role, customer, name)
    console.print(
        f"created API key [bold]{key.id}[/] ({plain(key.name)}, role {key.role}"
        + (f", customer {key.customer_id}" if key.customer_id is not None else "")
        + ")"
    )
    console.print("store it now, it is not shown again:", style="yellow")
    print(secret)


@app.command("list")
def list_() -> None:
    """List keys (prefix, role, customer, created, last used, revoked); never the secret.
    A customer key whose customer is gone is refused, and shown revoked."""
    from api.apikeys import list_keys

    keys = list_keys(app_engine())
    table = Table("id")
    table.add_column("prefix", no_wrap=True)
    for title in ("name", "role", "customer", "created", "last used", "revoked"):
        table.add_column(title)
    for k in keys:
        table.add_row(
            str(k.id),
            k.key_prefix,
            plain(k.name),
            k.role,
            "" if k.customer_id is None else str(k.customer_id),
            k.created_at.strftime("%Y-%m-%d %H:%M"),
            "" if k.last_used_at is None else k.last_used_at.strftime("%Y-%m-%d %H:%M"),
            _revoked(k),
        )
    console.print(table if keys else "no API keys yet: cdms apikey create --role ROLE")


def _revoked(key: ApiKey) -> str:
    if key.revoked_at is not None:
        return key.revoked_at.strftime("%Y-%m-%d %H:%M")
    return "customer deleted" if key.customer_gone else ""


@app.command("revoke")
def revoke(key_id: int = typer.Argument(..., help="The key's id (see cdms apikey list).")) -> None:
    """Revoke a key: requests with it are refused from now on."""
    from api.apikeys import revoke_key

    key = revoke_key(app_engine(), key_id)
    console.print(
        f"API key {key.id} ({plain(key.name)}) revoked at {key.revoked_at:%Y-%m-%d %H:%M:%S}"
    )
