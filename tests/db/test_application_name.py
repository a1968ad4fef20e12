"""Every connection of a cdms process names it in ``pg_stat_activity`` (``application_name``
"cdms <command> (pid N)"), so an operator (or a test run that hits ``max_connections``)
sees which process holds how many; a URL's own ``application_name`` wins."""

from __future__ import annotations

import os

from sqlalchemy.engine import Engine, make_url

from db.engine import dispose_engine, make_engine, unpinged


def _name(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.exec_driver_sql("SELECT current_setting('application_name')").scalar())


def test_connections_name_their_process(database_url: str) -> None:
    engine = make_engine(database_url)
    assert _name(engine) == _name(unpinged(engine))
    assert _name(engine).startswith("cdms") and _name(engine).endswith(f"(pid {os.getpid()})")
    url = make_url(database_url).update_query_dict({"application_name": "a BI tool"})
    mine = url.render_as_string(hide_password=False)
    try:
        assert _name(make_engine(mine)) == "a BI tool"
    finally:
        dispose_engine(mine)
