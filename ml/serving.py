"""The server's models: one scorer per model name, loaded at start, swapped on NOTIFY.

``store_for(engine)`` is the process's store for a database (created on first use: loads
the active versions and starts a daemon thread that LISTENs on ``cdms_model_activated``).
Any role may NOTIFY, so a notification is only a hint: the thread reads which versions are
active and reloads a model only when its active version is not the one it read last time;
what arrives meanwhile, or within a second of that look, makes one more look at most
(``db.listen``). A swap replaces one dict entry, so a request in flight keeps the scorer it
already holds. No scikit-learn is imported here.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.config import to_libpq_url
from db.listen import INTERVAL_S, SkipLog, drain
from ml import prediction_log, registry
from ml.errors import ModelUnavailableError
from ml.scorer import Scorer

CHANNEL = "cdms_model_activated"
log = logging.getLogger("cdms.ml")


class ModelStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._scorers: dict[str, Scorer] = {}
        self._seen: dict[str, int] = {}  # the active versions read at the last load
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listening = threading.Event()
        self._skips = SkipLog(log, CHANNEL)
        self.looks = 0  # reads of the active versions on NOTIFY
        self.swaps = 0  # models reloaded on NOTIFY (tests and the dashboard read it)

    # -- loading ------------------------------------------------------------------------
    def reload(self, name: str | None = None) -> None:
        """Load the active version of ``name`` (of every model when None)."""
        with self.engine.begin() as conn:  # (COMMIT: see db.replicas.commit_lsn)
            seen = registry.active_versions(conn, name)
            scorers = registry.load_active(conn, name)
        with self._lock:
            if name is None:
                self._scorers = {s.name: s for s in scorers}
                self._seen = seen
            else:
                for s in scorers:
                    self._scorers[s.name] = s
                if not scorers:
                    self._scorers.pop(name, None)
                self._seen.pop(name, None)
                self._seen.update(seen)

    def get(self, name: str) -> Scorer:
        found = self._scorers.get(name)
        if found is None:
            raise ModelUnavailableError(
                f"no active {name} model (train one: cdms ml train --model {name})",
                model=name,
            )
        return found

    def loaded(self) -> dict[str, int]:
        return {name: s.version for name, s in self._scorers.items()}

    def look(self) -> list[str]:
        """Read the active versions (no bytes) and reload each model whose active version
        is not the one read last time; the names reloaded."""
        self.looks += 1
        with self.engine.begin() as conn:
            active = registry.active_versions(conn)
        changed = sorted(
            n for n in active.keys() | self._seen.keys() if active.get(n) != self._seen.get(n)
        )
        for name in changed:
            t0 = time.perf_counter()
            try:
                self.reload(name)
            except Exception:
                log.exception("model listener could not reload %r", name[:64])
                continue
            self.swaps += 1
            log.info(
                "model %s now serves version %s (loaded in %.3f s)",
                name,
                self.loaded().get(name),
                time.perf_counter() - t0,
            )
        return changed

    # -- LISTEN -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the listener thread (idempotent); returns once it is LISTENing."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._listening.clear()
        self._thread = threading.Thread(target=self._listen, name="cdms-ml-listen", daemon=True)
        self._thread.start()
        self._listening.wait(timeout=10)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _listen(self) -> None:
        """A notification is a hint (any role may NOTIFY): what is queued is taken at once
        and makes one :meth:`look`, at once after a quiet spell, else INTERVAL_S after the
        last one (db.listen), so a flood costs a look a second."""
        url = to_libpq_url(self.engine.url.render_as_string(hide_password=False))
        first = True
        last_look = float("-inf")
        while not self._stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True, application_name="cdms-ml") as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    due: float | None = None if first else time.monotonic()  # missed ones
                    first = False
                    self._listening.set()
                    while not self._stop.is_set():
                        now = time.monotonic()
                        wait = 0.5 if due is None else min(max(due - now, 0.0), 0.5)
                        if drain(conn, wait, self._check) and due is None:
                            due = max(time.monotonic(), last_look + INTERVAL_S)
                        self._skips.flush()
                        if due is None or time.monotonic() < due:
                            continue
                        drain(conn, 0.0, self._check)  # sent before the look: it covers them
                        due, last_look = None, time.monotonic()
                        try:
                            self.look()
                        except sa.exc.SQLAlchemyError as exc:
                            log.warning("model listener could not read the registry (%s)", exc)
            except psycopg.Error as exc:
                log.warning("model listener lost its connection (%s); retrying", exc)
                self._listening.set()
                self._stop.wait(1.0)

    def _check(self, payload: str) -> None:
        """Count a payload that is not the trigger's ``{"name", "version"}`` (logged once an
        interval): nothing of it is used either way, the look reads the registry."""
        try:
            event = json.loads(payload) if len(payload) <= 1_000 else None
        except (ValueError, RecursionError):
            event = None
        if not (isinstance(event, dict) and isinstance(event.get("name"), str)):
            self._skips.skip("not a model activation", payload)


_stores: dict[str, ModelStore] = {}
_stores_lock = threading.Lock()


def store_for(engine: Engine) -> ModelStore:
    """The process's model store for ``engine``'s database (loaded and listening)."""
    key = engine.url.render_as_string(hide_password=False)
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = ModelStore(engine)
            store.reload()
            store.start()
    return store


def close_store(engine: Engine) -> None:
    _close(engine.url.render_as_string(hide_password=False))


def _close(key: str) -> None:
    with _stores_lock:
        store = _stores.pop(key, None)
    if store is not None:
        store.stop()
    prediction_log.close_key(key)  # flush the predictions it served


def close_store_of(url: str) -> None:
    """Stop the listener of ``url``'s model store, if this process has one (before the
    database is dropped, so the listener does not keep reconnecting to it)."""
    from sqlalchemy.engine import make_url

    from db.config import to_sqlalchemy_url

    _close(make_url(to_sqlalchemy_url(url)).render_as_string(hide_password=False))
