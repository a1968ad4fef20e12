"""What ``cdms serve`` does before it listens: each step is idempotent."""

from __future__ import annotations

from api.cli.common import console
from api.settings import Settings


def prepare(url: str, settings: Settings, *, seed_demo: bool = True) -> None:
    from db.migrate import upgrade

    with console.status("applying migrations"):
        before, after = upgrade(url)
    console.print(
        f"database at revision [bold]{after}[/]" + ("" if before == after else f" (was {before})")
    )
    if seed_demo:
        from api.cli.seed import seed_demo_if_empty

        seed_demo_if_empty(url, settings)
    from api.cli.etl import load_on_startup

    load_on_startup(url)
    from api.cli.ml import score_on_startup, train_on_first_start

    train_on_first_start(url)
    score_on_startup(url)
