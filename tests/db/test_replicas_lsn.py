"""The commit position a mutation reports (db.replicas.commit_lsn) leaves the pooled
connection's prepared statements in place: psycopg deallocates them on a ROLLBACK, and
every mutation asks for it on a connection the reads share."""

from __future__ import annotations

import sqlalchemy as sa

from db.config import to_sqlalchemy_url
from db.replicas import commit_lsn, parse_lsn


def test_commit_lsn_keeps_the_connections_prepared_statements(database_url: str) -> None:
    engine = sa.create_engine(to_sqlalchemy_url(database_url), pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:  # the one pooled connection
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            for _ in range(6):  # psycopg prepares a statement on its fifth run
                conn.execute(
                    sa.text("SELECT count(*) FROM pg_class WHERE relpages >= :n"), {"n": 0}
                )
            conn.commit()
        lsn = commit_lsn(engine)
        assert parse_lsn(lsn, "test") > 0
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() == pid
            prepared = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_prepared_statements"
                " WHERE strpos(statement, 'relpages') > 0"
            ).scalar_one()
        assert prepared == 1
    finally:
        engine.dispose()
