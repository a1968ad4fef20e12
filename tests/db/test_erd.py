"""The ERD (docs/erd.md) is generated from the catalog, deterministic, and kept current."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
from sqlalchemy.engine import Engine

from db.config import to_libpq_url
from db.engine import make_engine
from db.erd import generate
from tests.cli import run_cdms

ERD = Path(__file__).resolve().parents[2] / "docs" / "erd.md"


def test_docs_erd_md_is_current(engine: Engine) -> None:
    page = generate(engine)
    committed = ERD.read_text(encoding="utf-8") if ERD.exists() else ""
    assert committed == page, "docs/erd.md is stale: run cdms db erd"


def test_the_diagram_draws_tables_keys_and_cardinalities(engine: Engine) -> None:
    page = generate(engine)
    assert page == generate(engine)  # deterministic
    assert "```mermaid\nerDiagram\n" in page
    assert (
        "    app_order_items {\n        bigint order_id PK, FK\n        integer line_no PK\n"
        in (page)
    )
    assert '        numeric unit_price "numeric(12,2)"\n' in page
    assert '        bigint order_id FK "null"\n' in page  # feedback.order_id is optional
    assert "        text sku UK\n" in page
    # mandatory parent, many children; identifying when the key is part of the child's PK
    assert '    app_customers ||..o{ app_orders : "customer_id"\n' in page
    assert '    app_orders ||--o{ app_order_items : "order_id"\n' in page
    assert '    app_orders |o..o{ app_feedback : "order_id"\n' in page
    assert '    app_order_items ||..o{ app_returns : "order_id, line_no"\n' in page
    lines = page.splitlines()
    entities = [line.split()[0] for line in lines if line.endswith(" {")]
    assert entities == sorted(entities)
    relationships = [line for line in lines if " : " in line]
    assert relationships == sorted(relationships)


def test_a_unique_foreign_key_is_one_to_one(fresh_database: Callable[[], str]) -> None:
    url = fresh_database()
    with psycopg.connect(to_libpq_url(url)) as conn:
        conn.execute(
            "CREATE SCHEMA erdtest;"
            "CREATE TABLE erdtest.parent (id int PRIMARY KEY);"
            "CREATE TABLE erdtest.child (id int PRIMARY KEY,"
            " parent_id int UNIQUE REFERENCES erdtest.parent (id));"
        )
        conn.commit()
    page = generate(make_engine(url), ("erdtest",))
    assert '    erdtest_parent |o..o| erdtest_child : "parent_id"\n' in page
    assert '        integer parent_id FK, UK "null"\n' in page
    assert "- `erdtest` (2 tables): child, parent" in page
    assert "app_" not in page


def test_cdms_db_erd_writes_and_checks_the_file(
    cli_env: dict[str, str], tmp_path: Path, engine: Engine
) -> None:
    """By default from a scratch database migrated afresh; --live reads the database as is."""
    target = tmp_path / "erd.md"
    done = run_cdms(cli_env, "db", "erd", "--output", str(target))
    assert done.returncode == 0, done.stderr
    assert target.read_text(encoding="utf-8") == generate(engine)

    target.write_text("old\n", encoding="utf-8")
    stale = run_cdms(cli_env, "db", "erd", "--output", str(target), "--check", "--live")
    assert stale.returncode == 1
    assert stale.stderr.strip() == f"error[STALE]: {target} is stale: run cdms db erd"
    assert target.read_text(encoding="utf-8") == "old\n"

    # bytes that are not UTF-8 are not the diagram either (a UnicodeDecodeError traceback)
    target.write_bytes(b"\xff\xfe old\n")
    stale = run_cdms(cli_env, "db", "erd", "--output", str(target), "--check", "--live")
    assert stale.returncode == 1
    assert stale.stderr.strip() == f"error[STALE]: {target} is stale: run cdms db erd"
