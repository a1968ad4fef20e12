"""The server's models: one scorer per model name, loaded at start, swapped on NOTIFY.

``store_for(engine)`` is the process's store for a database (created on first use: loads
the active versions and starts a daemon thread that LISTENs on ``cdms_model_activated``
and reloads the named model). A swap replaces one dict entry, so a request in flight keeps
the scorer it already holds. No scikit-learn is imported here.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import psycopg
from sqlalchemy.engine import Engine

from db.config import to_libpq_url
from ml import prediction_log, registry
from ml.errors import ModelUnavailableError
from ml.scorer import Scorer

CHANNEL = "cdms_model_activated"
log = logging.getLogger("cdms.ml")


class ModelStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._scorers: dict[str, Scorer] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listening = threading.Event()
        self.swaps = 0  # reloads done on NOTIFY (tests and the dashboard read it)

    # -- loading ------------------------------------------------------------------------
    def reload(self, name: str | None = None) -> None:
        """Load the active version of ``name`` (of every model when None)."""
        with self.engine.begin() as conn:  # (COMMIT: see db.replicas.commit_lsn)
            scorers = registry.load_active(conn, name)
        with self._lock:
            if name is None:
                self._scorers = {s.name: s for s in scorers}
            else:
                for s in scorers:
                    self._scorers[s.name] = s
                if not scorers:
                    self._scorers.pop(name, None)

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
        url = to_libpq_url(self.engine.url.render_as_string(hide_password=False))
        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True, application_name="cdms-ml") as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if not first:  # activations missed while reconnecting
                        self.reload()
                    first = False
                    self._listening.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5, stop_after=1):
                            self._on_notify(note.payload)
            except psycopg.Error as exc:
                log.warning("model listener lost its connection (%s); retrying", exc)
                self._listening.set()
                self._stop.wait(1.0)

    def _on_notify(self, payload: str) -> None:
        """A hint that ``name``'s active version may have changed: its row is read again.
        Any role may NOTIFY, so a payload that is not one (nested too deep, not an object)
        is skipped, and a failed read is logged; the listener goes on either way."""
        try:
            name = str(json.loads(payload)["name"])
        except (ValueError, KeyError, TypeError, IndexError, RecursionError):
            log.warning("ignoring %s payload %r", CHANNEL, payload[:64])
            return
        t0 = time.perf_counter()
        try:
            self.reload(name)
        except Exception:
            log.exception("model listener could not reload %r", name[:64])
            return
        self.swaps += 1
        log.info(
            "model %s now serves version %s (loaded in %.3f s)",
            name,
            self.loaded().get(name),
            time.perf_counter() - t0,
        )


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
