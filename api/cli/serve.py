"""``cdms serve``: migrate (and seed an empty demo database), listen; the warehouse load,
missing models (outside production) and scoring follow in the background (api/startup.py)."""

from __future__ import annotations

from typing import Any

import typer

from api.cli.common import console


def serve(
    host: str | None = typer.Option(
        None, help="Interface to bind (default CDMS_HOST or 127.0.0.1)."
    ),
    port: int | None = typer.Option(
        None, min=1, max=65535, help="Port (default CDMS_PORT or 8000)."
    ),
    seed_demo: bool = typer.Option(True, help="Seed demo data when the database is empty."),
    workers: int | None = typer.Option(
        None,
        min=1,
        max=64,
        help="uvicorn worker processes (default CDMS_WORKERS or 1); rate limits hold across"
        " them (kept in the database), caches are per process.",
    ),
) -> None:
    """Serve the API, after bringing the database up to date."""
    import os
    import signal
    import sys

    from api.extras import require

    require("serve", "cdms serve")
    import uvicorn
    from rich.markup import escape

    from api.app import create_app, settle
    from api.cli.port import check_port
    from api.connection import BoundedWebSocketProtocol, HeadLimits, LimitedHttpToolsProtocol
    from api.lock import ServeLock
    from api.pipeline_process import PipelineProcess
    from api.security import SecurityConfig, demo_warnings
    from api.settings import Settings, retired_variables, unknown_variables
    from api.startup import prepare
    from db.engine import check_connection, database_url, make_engine
    from db.errors import ConfigError
    from db.server import stop_embedded
    from ml.serving import close_store_of

    for name in unknown_variables(os.environ):
        console.print(
            f"[yellow]warning:[/] {escape(name)} is not a cdms setting (.env.example lists them)"
        )
    settings = Settings.from_env()
    for line in retired_variables(os.environ):
        console.print(f"[yellow]warning:[/] {escape(line)}; remove it")
    bind_host = host or settings.host
    bind_port = port or settings.port
    address = f"http://{bind_host}:{bind_port}"
    for line in demo_warnings(
        SecurityConfig.of(settings), bind_host, os.environ.get("FORWARDED_ALLOW_IPS")
    ):
        console.print(f"[yellow]warning:[/] {escape(line)}")
    if settings.env == "production" and settings.db.database_url is None:
        raise ConfigError(
            "CDMS_ENV=production needs DATABASE_URL: the embedded PostgreSQL is for"
            " development and demos"
        )
    check_port(bind_host, bind_port)  # before any start-up work
    # one serve per data folder (its embedded server); an external server may have several
    folder = settings.db.used_data_dir
    lock = ServeLock(folder) if folder is not None else None
    # uvicorn shuts down gracefully, then re-raises the signal it caught; turn that into a
    # normal exit so the lock is released and the embedded server is stopped.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    if lock is not None:
        lock.acquire(address)
    pipeline: PipelineProcess | None = None
    url = None
    try:
        url = database_url(settings.db)
        check_connection(url)
        prepare(url, settings, seed_demo=seed_demo)
        # the start-up work, then the pipeline's schedule, in one child process (not in a
        # process that answers requests), while the API listens
        schedule = settings.schedule
        pipeline = PipelineProcess(
            url,
            train=settings.train_on_start,
            schedule=(schedule.mode.value, schedule.interval_s, schedule.floor_s,
                      schedule.ceiling_s),
            nice=settings.etl_nice,
            hold_minutes=settings.hold_stock_minutes,
            report=console.print,
        )  # fmt: skip
        pipeline.start()
        processes = workers or settings.workers
        console.print(
            f"cdms serving on [bold]{address}[/]"
            + (f", {processes} worker processes" if processes > 1 else "")
            + f"\n  GraphQL API  {address}/graphql  (GraphiQL: open it in a browser)"
            + f"\n  dashboard    {address}/dashboard/"
            + f"\n  health       {address}/healthz  (ready: {address}/readyz)"
            + ("" if settings.db.database_url else f"\n  data folder  {settings.db.data_dir}"),
            highlight=False,
        )
        options: dict[str, Any] = {
            "host": bind_host,
            "port": bind_port,
            "log_level": "info",
            "timeout_graceful_shutdown": 10,
            "server_header": False,  # no "server: uvicorn": nothing to fingerprint by
            # a WebSocket message is held to the body limit (api/ws.py checks it too)
            "ws_max_size": settings.max_body_bytes,
            # httptools (fast), with a bound on a request head's size and time
            "http": LimitedHttpToolsProtocol.factory(
                HeadLimits(
                    settings.max_header_bytes, settings.header_timeout_s, settings.send_timeout_s
                )
            ),
            # a WebSocket whose client reads nothing ends (api/ws.py's send timeout)
            "ws": BoundedWebSocketProtocol,
        }
        if processes == 1:
            app = create_app(make_engine(url))
            settle()
            uvicorn.run(app, **options)
        else:
            # each worker imports the app and builds its own engine on the database this
            # process prepared; this process keeps the lock, the embedded server and the
            # pipeline's process, and uvicorn's supervisor restarts a worker that dies
            os.environ["DATABASE_URL"] = url
            uvicorn.run("api.app:worker_app", factory=True, workers=processes, **options)
    finally:
        if pipeline is not None:
            pipeline.stop()
        if url is not None:
            close_store_of(url)  # the model listener, before its server goes away
        if lock is not None:
            lock.release()
        if settings.db.database_url is None:
            stop_embedded(settings.db.data_dir)
