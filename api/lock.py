"""One ``cdms serve`` per data folder: an exclusive lock file that says who holds it."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import IO

from db.errors import AlreadyRunningError, DataDirError


class ServeLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "serve.lock"
        self._fh: IO[str] | None = None

    def acquire(self, address: str) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fh = self.path.open("a+")
        except OSError as exc:
            raise DataDirError(
                f"cannot write {self.path} ({exc.strerror or exc}); set CDMS_DATA_DIR"
            ) from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            try:
                holder = json.loads(fh.read() or "{}")
            except ValueError:
                holder = {}
            fh.close()
            raise AlreadyRunningError(
                f"cdms serve is already running on data folder {self.path.parent} "
                f"(pid {holder.get('pid', '?')}, {holder.get('address', 'address unknown')}); "
                "use that server or stop it first"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "address": address}))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
