"""``db.backup``: what pg_dump and pg_restore are given (their command lines, their
environment) and the file a backup writes (probe 13: H1, M2, L3).

pg_dump and pg_restore run through a wrapper that records its argv and environment and then
runs the real program, so the round trips are real."""

from __future__ import annotations

import json
import os
import secrets
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

import db.backup
from db.backup import BackupError, backup, restore
from db.config import to_libpq_url
from db.engine import dispose_engine, drop_database, ensure_database, make_engine, with_database
from db.errors import BadUserInputError, ConfigError
from db.server import pg_bin

Calls = list[dict[str, Any]]

_WRAPPER = """#!{python}
import json, os, sys
with open({log!r}, "a") as log:
    log.write(json.dumps({{"argv": sys.argv, "env": dict(os.environ)}}) + "\\n")
os.execv({real!r}, [{real!r}, *sys.argv[1:]])
"""

# a pg_dump that writes half a dump where it is told to, then fails
_FAILING = """#!{python}
import sys
for arg in sys.argv[1:]:
    if arg.startswith("--file="):
        open(arg[len("--file="):], "wb").write(b"PGDMP half")
sys.stdout.buffer.write(b"PGDMP half")
sys.stderr.write("pg_dump: error: connection to server lost\\n")
sys.exit(1)
"""


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pg_dump and pg_restore through the recording wrapper (``_read_calls``)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    log = tmp_path / "calls.jsonl"
    log.touch()
    for name in ("pg_dump", "pg_restore"):
        script = folder / name
        script.write_text(
            _WRAPPER.format(python=sys.executable, log=str(log), real=str(pg_bin(name)))
        )
        script.chmod(0o700)
    monkeypatch.setattr(db.backup, "pg_bin", lambda name: folder / name)


def _read_calls(tmp_path: Path) -> Calls:
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


@pytest.fixture
def password_role(admin_url: str) -> Iterator[tuple[str, str]]:
    """A login role with a password (the local server trusts every login: the password
    is not checked, only where it travels). Superuser, so that it dumps every row."""
    role = f"cdms_bk_{secrets.token_hex(3)}"
    password = f"Pw-{secrets.token_hex(6)}@:/?&x"
    with psycopg.connect(to_libpq_url(admin_url), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'".encode())
    try:
        yield role, password
    finally:
        with psycopg.connect(to_libpq_url(admin_url), autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}".encode())


def _as(url: str, role: str, password: str) -> str:
    u = make_url(url).set(username=role, password=password)
    return u.render_as_string(hide_password=False)


def _customers(url: str) -> list[str]:
    with make_engine(url).connect() as conn:
        return list(conn.execute(sa.text("SELECT email FROM app.customers ORDER BY 1")).scalars())


@pytest.mark.usefixtures("recorded")
def test_the_password_is_on_no_command_line_and_a_round_trip_with_it_works(
    fresh_database: Callable[[], str],
    admin_url: str,
    password_role: tuple[str, str],
    tmp_path: Path,
) -> None:
    """H1: ``u.set(password=None)`` left the password in the URL given to pg_dump and
    pg_restore, so every local user read it in ``ps``. It travels in PGPASSWORD only."""
    role, password = password_role
    source = fresh_database()
    with make_engine(source).begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO app.customers (email, first_name, last_name, country, region, city)"
                " VALUES ('backup-pw@example.com', 'A', 'B', 'DE', 'R', 'C')"
            )
        )
    file = tmp_path / "pw.dump"
    backup(_as(source, role, password), file)
    name = source.rsplit("/", 1)[1].split("?", 1)[0] + "_pw"
    ensure_database(admin_url, name)
    target = with_database(admin_url, name)
    try:
        restore(_as(target, role, password), file)
        assert _customers(target) == ["backup-pw@example.com"]
    finally:
        dispose_engine(target)
        drop_database(admin_url, name)
    ran = _read_calls(tmp_path)
    assert [Path(c["argv"][0]).name for c in ran] == ["pg_dump", "pg_restore", "pg_restore"]
    for call in ran:
        line = " ".join(call["argv"])
        assert "Pw-" not in line and "%40" not in line, line  # nor percent-encoded
        assert "password=" not in line, line
    for call in (ran[0], ran[2]):  # the two that connect
        assert call["env"]["PGPASSWORD"] == password
        assert role in " ".join(call["argv"])  # the URL's user, host and database stay


@pytest.mark.usefixtures("recorded")
def test_a_password_given_as_a_url_parameter_stays_off_the_command_line(
    database_url: str, tmp_path: Path
) -> None:
    u = make_url(database_url)
    url = (
        u.render_as_string(hide_password=False)
        + ("&" if u.query else "?")
        + "password=QueryParamSecret"
    )
    backup(url, tmp_path / "q.dump")
    (call,) = _read_calls(tmp_path)
    assert "QueryParamSecret" not in " ".join(call["argv"])
    assert call["env"]["PGPASSWORD"] == "QueryParamSecret"


@pytest.mark.usefixtures("recorded")
def test_a_client_keys_password_in_the_url_is_refused_before_anything_runs(
    database_url: str, tmp_path: Path
) -> None:
    """libpq has no environment variable for ``sslpassword``: pg_dump could only be given
    it on its command line. Refused, nothing run, nothing written."""
    u = make_url(database_url)
    url = (
        u.render_as_string(hide_password=False)
        + ("&" if u.query else "?")
        + "sslpassword=KeyPassphrase"
    )
    with pytest.raises(ConfigError) as refused:
        backup(url, tmp_path / "k.dump")
    assert "sslpassword" in str(refused.value) and "KeyPassphrase" not in str(refused.value)
    assert _read_calls(tmp_path) == []
    assert not (tmp_path / "k.dump").exists()


@pytest.mark.usefixtures("recorded")
def test_the_backup_is_readable_by_its_owner_only(database_url: str, tmp_path: Path) -> None:
    """M2: the backup (every customer's personal data) was 0644 under umask 022."""
    file = tmp_path / "private.dump"
    file.write_bytes(b"an older backup")
    file.chmod(0o644)
    old = os.umask(0o022)
    try:
        backup(database_url, file)
    finally:
        os.umask(old)
    info = file.lstat()
    assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert file.read_bytes().startswith(b"PGDMP")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "calls.jsonl", "private.dump"]


@pytest.mark.usefixtures("recorded")
def test_a_planted_partial_file_or_symlink_is_neither_followed_nor_used(
    database_url: str, tmp_path: Path
) -> None:
    """M2: pg_dump opened the predictable ``FILE.partial`` without O_EXCL, following
    symlinks: another local user's file of that name became the backup (theirs to read and
    change), a symlink there made pg_dump overwrite what it pointed at."""
    victim = tmp_path / "victim.conf"
    victim.write_bytes(b"root only")
    victim.chmod(0o600)
    linked = tmp_path / "a.dump"
    (tmp_path / "a.dump.partial").symlink_to(victim)
    backup(database_url, linked)
    assert victim.read_bytes() == b"root only"
    assert (tmp_path / "a.dump.partial").is_symlink()  # not touched either
    assert not linked.is_symlink() and linked.read_bytes().startswith(b"PGDMP")

    planted = tmp_path / "b.dump.partial"
    planted.write_bytes(b"planted")
    planted.chmod(0o666)
    file = tmp_path / "b.dump"
    backup(database_url, file)
    assert planted.read_bytes() == b"planted"
    assert file.stat().st_ino != planted.stat().st_ino
    assert stat.S_IMODE(file.stat().st_mode) == 0o600


def test_a_failed_dump_leaves_the_old_file_and_nothing_else(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "pg_dump"
    script.write_text(_FAILING.format(python=sys.executable))
    script.chmod(0o700)
    monkeypatch.setattr(db.backup, "pg_bin", lambda name: folder / name)
    out = tmp_path / "out"
    out.mkdir()
    file = out / "c.dump"
    file.write_bytes(b"the last good backup")
    with pytest.raises(BackupError, match="connection to server lost"):
        backup(database_url, file)
    assert file.read_bytes() == b"the last good backup"
    assert [p.name for p in out.iterdir()] == ["c.dump"]


@pytest.mark.usefixtures("recorded")
def test_the_connections_security_settings_reach_pg_dump(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """L3: every ``PG*`` variable was dropped, so ``PGSSLMODE=verify-full`` with its
    ``PGSSLROOTCERT`` (which the app's own connections honour) did not reach pg_dump: a dump
    without certificate checks. libpq's connection variables are kept; the URL's own host,
    port, user and database still win over PGHOST & co.; variables that change what
    pg_dump writes or prints (PGCLIENTENCODING, PG_COLOR) are not passed on."""
    kept = {
        "PGSSLMODE": "prefer",  # (the test server has no TLS: prefer still connects)
        "PGSSLROOTCERT": str(tmp_path / "no-ca.pem"),
        "PGSSLCRL": str(tmp_path / "no-crl.pem"),
        "PGSSLCERT": str(tmp_path / "no-client.crt"),
        "PGSSLKEY": str(tmp_path / "no-client.key"),
        "PGGSSENCMODE": "disable",
        "PGPASSFILE": str(tmp_path / "no-pgpass"),
        "PGCONNECT_TIMEOUT": "17",
        "PGTARGETSESSIONATTRS": "any",
        "PGHOST": str(tmp_path / "no-socket-here"),
        "PGDATABASE": "no_such_database",
        "PGUSER": "no_such_user",
    }
    if make_url(database_url).port is not None:  # (a URL without one, as the embedded
        kept["PGPORT"] = "1"  # server's socket URL, takes PGPORT's, as libpq does)
    dropped = {"PGCLIENTENCODING": "LATIN1", "PG_COLOR": "always", "PGDATA": "/nowhere"}
    for key, value in {**kept, **dropped}.items():
        monkeypatch.setenv(key, value)
    file = tmp_path / "env.dump"
    backup(database_url, file)
    monkeypatch.undo()
    (call,) = _read_calls(tmp_path)
    env = call["env"]
    assert {k: env.get(k) for k in kept} == kept
    assert not set(dropped) & set(env)
    assert file.read_bytes().startswith(b"PGDMP")  # the URL's database, despite PGHOST & co.


@pytest.mark.usefixtures("recorded")
def test_a_target_that_is_not_a_regular_file_is_refused_before_anything_runs(
    database_url: str, tmp_path: Path
) -> None:
    """Probe 15, L3: only a folder was refused, so the rename replaced whatever else the
    name was: a ``latest.dump -> dated.dump`` symbolic link became a file of its own, and
    ``cdms db backup /dev/stdout`` as root would replace the system's /dev/stdout. A
    symbolic link (to a file, a device, nothing), a fifo or a device is refused naming it;
    nothing runs, nothing changes. A new name or a regular file is written as before."""
    dated = tmp_path / "dated.dump"
    dated.write_bytes(b"yesterday's backup")
    latest = tmp_path / "latest.dump"
    latest.symlink_to(dated)
    to_stdout = tmp_path / "out"
    to_stdout.symlink_to("/dev/null")
    dangling = tmp_path / "gone.dump"
    dangling.symlink_to(tmp_path / "nothing-here")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    targets = [latest, to_stdout, dangling, fifo]
    device = tmp_path / "null"
    try:  # (a device of our own, as /dev/null: root only)
        os.mknod(device, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        targets.append(device)
    except PermissionError:
        pass
    before = sorted(p.name for p in tmp_path.iterdir())
    for target in targets:
        with pytest.raises(BadUserInputError) as refused:
            backup(database_url, target)
        assert str(target) in refused.value.message
        assert "not a regular file" in refused.value.message
    assert _read_calls(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert latest.is_symlink() and dated.read_bytes() == b"yesterday's backup"
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert to_stdout.is_symlink()
    assert all(stat.S_ISCHR(p.lstat().st_mode) for p in targets[4:])

    backup(database_url, dated)  # a regular file: replaced
    assert dated.read_bytes().startswith(b"PGDMP") and latest.is_symlink()
