"""What runs on the pool the requests' reads share ends its transactions with COMMIT, so
the connection keeps its prepared statements: psycopg deallocates them on every ROLLBACK,
and a read after such a transaction would plan its statements again. Covered: the commit
position every mutation reports (db.replicas.commit_lsn), the readiness probe
(``/readyz``, polled by load balancers), the model store's reload and the lookup of a
persisted query by its hash."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from api.pipeline import Pipeline, Policy
from api.readiness import ReadinessProbe
from db.config import to_sqlalchemy_url
from db.replicas import commit_lsn, parse_lsn
from ml.serving import ModelStore
from schema.app import graphql_schema


def _lsn(engine: Engine) -> None:
    assert parse_lsn(commit_lsn(engine), "test") > 0


def _ready(engine: Engine) -> None:
    body, _ready = ReadinessProbe(engine, "head", frozenset())._check()
    assert body["api"]["database"] == "ok"


def _models(engine: Engine) -> None:
    ModelStore(engine).reload()


def _persisted(engine: Engine) -> None:
    pipeline = Pipeline(graphql_schema(), engine, Policy())
    assert pipeline._lookup("0" * 64) is None  # (a hash no query is registered under)


@pytest.mark.parametrize(
    "use",
    [_lsn, _ready, _models, _persisted],
    ids=["commit_lsn", "readyz", "models", "persisted_query"],
)
def test_the_pooled_connection_keeps_its_prepared_statements(
    database_url: str, use: Callable[[Engine], None]
) -> None:
    engine = sa.create_engine(to_sqlalchemy_url(database_url), pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:  # the one pooled connection
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            for _ in range(6):  # psycopg prepares a statement on its fifth run
                conn.execute(
                    sa.text("SELECT count(*) FROM pg_class WHERE relpages >= :n"), {"n": 0}
                )
            conn.commit()
        use(engine)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() == pid
            prepared = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_prepared_statements"
                " WHERE strpos(statement, 'relpages') > 0"
            ).scalar_one()
        assert prepared == 1
    finally:
        engine.dispose()
