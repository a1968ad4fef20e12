"""``cdms apikey`` and ``cdms db backup/restore`` as a user runs them (subprocesses)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from api.apikeys import hash_key
from db.engine import ensure_database, make_engine, with_database
from tests.cli import run_cdms

# every table of the three schemas, with a content checksum in key order
TABLES_SQL = """
SELECT table_schema || '.' || table_name FROM information_schema.tables
 WHERE table_schema IN ('app', 'dw', 'ml') AND table_type = 'BASE TABLE' ORDER BY 1
"""


def cdms(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cdms(env, *args, timeout=180)


def fingerprint(url: str) -> dict[str, tuple[int, str]]:
    """Row count and md5 of the sorted rows of every table."""
    out: dict[str, tuple[int, str]] = {}
    with make_engine(url).connect() as conn:
        for (table,) in conn.execute(sa.text(TABLES_SQL)).all():
            count, digest = conn.execute(
                sa.text(
                    f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
                    f" FROM {table} AS t"
                )
            ).one()
            out[table] = (int(count), str(digest))
        policies = conn.execute(sa.text("SELECT count(*) FROM pg_policies")).scalar_one()
        out["pg_policies"] = (int(policies), "")
    return out


def test_apikey_create_list_revoke(cli_env: dict[str, str], database_url: str) -> None:
    with make_engine(database_url).begin() as conn:
        cid = conn.execute(
            sa.text(
                "INSERT INTO app.customers (email, first_name, last_name, country, region, city)"
                " VALUES ('cli-key@example.com', 'A', 'B', 'DE', 'R', 'C') RETURNING id"
            )
        ).scalar_one()
    made = cdms(
        cli_env, "apikey", "create", "--role", "customer", "--customer", str(cid), "--name", "app"
    )
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("cdms_")
    with make_engine(database_url).connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT id, role, customer_id, key_hash FROM app.api_keys WHERE key_prefix = :p"
            ),
            {"p": secret[:13]},
        ).one()
    assert (row.role, row.customer_id, row.key_hash) == ("customer", cid, hash_key(secret))
    listed = cdms({**cli_env, "COLUMNS": "200"}, "apikey", "list")
    assert listed.returncode == 0 and secret[:13] in listed.stdout and secret not in listed.stdout
    revoked = cdms(cli_env, "apikey", "revoke", str(row.id))
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    # bad input: one line, a stable code, nothing written
    for args, code in (
        (["create", "--role", "root"], "BAD_USER_INPUT"),
        (["create", "--role", "customer"], "BAD_USER_INPUT"),
        (["create", "--role", "customer", "--customer", "999999999"], "NOT_FOUND"),
        (["revoke", "999999999"], "NOT_FOUND"),
    ):
        bad = cdms(cli_env, "apikey", *args)
        assert bad.returncode == 1 and bad.stderr.startswith(f"error[{code}]"), bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
    with make_engine(database_url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM app.api_keys")).scalar_one() == 1


def test_backup_restore_round_trip(
    fresh_database: Callable[[], str], admin_url: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    from tests.api.conftest import build_shop

    source = fresh_database()
    with make_engine(source).begin() as conn:
        build_shop(conn)
        conn.execute(
            sa.text(
                "INSERT INTO app.api_keys (name, role, key_prefix, key_hash)"
                " VALUES ('k', 'admin', 'cdms_0badf00d', repeat('a', 64))"
            )
        )
    before = fingerprint(source)
    assert before["app.orders"][0] == 28 and before["pg_policies"][0] > 20
    file = tmp_path / "cdms.dump"
    env = {**cli_env, "DATABASE_URL": source}
    done = cdms(env, "db", "backup", str(file))
    assert done.returncode == 0, done.stderr
    assert file.stat().st_size > 0 and not (tmp_path / "cdms.dump.partial").exists()

    # into an empty database: everything comes back, row for row
    name = source.rsplit("/", 1)[1].split("?", 1)[0] + "_r"
    ensure_database(admin_url, name)
    target = with_database(admin_url, name)
    try:
        done = cdms({**cli_env, "DATABASE_URL": target}, "db", "restore", str(file))
        assert done.returncode == 0, done.stderr
        assert fingerprint(target) == before
    finally:
        from db.engine import dispose_engine, drop_database

        dispose_engine(target)
        drop_database(admin_url, name)

    # into a database with data: refused, unchanged; with --force: replaced
    with make_engine(source).begin() as conn:
        conn.execute(sa.text("DELETE FROM app.feedback"))
    changed = fingerprint(source)
    refused = cdms(env, "db", "restore", str(file))
    assert refused.returncode == 1 and refused.stderr.startswith("error[CONFLICT]"), refused.stderr
    assert fingerprint(source) == changed
    forced = cdms(env, "db", "restore", "--force", str(file))
    assert forced.returncode == 0, forced.stderr
    assert fingerprint(source) == before
    # not a backup at all
    junk = tmp_path / "junk.dump"
    junk.write_text("not a dump")
    bad = cdms(env, "db", "restore", "--force", str(junk))
    assert bad.returncode == 1 and bad.stderr.startswith("error[BAD_USER_INPUT]"), bad.stderr
    assert fingerprint(source) == before


def test_persisted_add_list_and_remove(
    cli_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    import hashlib

    good = tmp_path / "products.graphql"
    good.write_text("query Products { products { totalCount } }\n")
    sha = hashlib.sha256(good.read_bytes()).hexdigest()
    bad = tmp_path / "broken.graphql"
    bad.write_text("query { products { ")
    refused = cdms(cli_env, "persisted", "add", str(good), str(bad))
    assert refused.returncode == 1 and refused.stderr.startswith("error[BAD_USER_INPUT]")
    with make_engine(database_url).connect() as conn:
        count = "SELECT count(*) FROM app.persisted_queries WHERE sha256 = :h"
        assert conn.execute(sa.text(count), {"h": sha}).scalar_one() == 0  # all or none
    for _ in range(2):  # idempotent
        done = cdms(cli_env, "persisted", "add", str(good))
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [sha, "products"]
    listed = cdms({**cli_env, "COLUMNS": "200"}, "persisted", "list")
    assert listed.returncode == 0 and sha in listed.stdout
    with make_engine(database_url).connect() as conn:
        assert conn.execute(sa.text(count), {"h": sha}).scalar_one() == 1
    # withdrawn by name (or hash); a key that names nothing removes nothing at all
    unknown = cdms(cli_env, "persisted", "remove", "products", "no-such-query")
    assert unknown.returncode == 1, unknown
    assert unknown.stderr.startswith("error[NOT_FOUND]: no persisted query has the hash or name")
    with make_engine(database_url).connect() as conn:
        assert conn.execute(sa.text(count), {"h": sha}).scalar_one() == 1  # all or none
    done = cdms(cli_env, "persisted", "remove", "products")
    assert done.returncode == 0 and sha in done.stdout, done
    with make_engine(database_url).connect() as conn:
        assert conn.execute(sa.text(count), {"h": sha}).scalar_one() == 0
    again = cdms(cli_env, "persisted", "remove", sha)
    assert again.returncode == 1 and again.stderr.startswith("error[NOT_FOUND]")


def test_persisted_add_refuses_a_document_the_schema_would_refuse(
    cli_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    """A document that parses but names no field of the schema (or breaks another
    validation rule) would be refused on every call: registering it is an error, and
    nothing of the command line is registered."""
    good = tmp_path / "products.graphql"
    good.write_text("query Products { products { totalCount } }\n")
    cases = {
        "unknown.graphql": ("query { products { noSuchField } }", "noSuchField"),
        "two.graphql": (
            "query A { products { totalCount } } query A { customers { totalCount } }",
            "A",
        ),
        "mistyped.graphql": (
            "query ($n: Int) { products(first: $n, after: 3) { totalCount } }",
            "(line 1, column 46)",
        ),
        # valid, but over the server's size limits on every call (probe of 2026-12-07): a
        # fragment bomb of billions of fields, more tokens than the server parses
        "bomb.graphql": (
            "query { ...F9 } "
            + " ".join(
                f"fragment F{i} on Query {{ ...F{i - 1} ...F{i - 1} ...F{i - 1} ...F{i - 1} }}"
                for i in range(1, 10)
            )
            + " fragment F0 on Query { products { totalCount } }",
            "fields once its fragments are spread",
        ),
        "long.graphql": (
            "query { " + " ".join(["products { totalCount }"] * 1_300) + " }",
            "tokens",
        ),
        # an alias is repeated as a key by every row of the answer (probe 10)
        "alias.graphql": (
            "query { products { " + "a" * 65 + ": totalCount } }",
            "an alias of 65 characters",
        ),
    }
    for name, (text, named) in cases.items():
        bad = tmp_path / name
        bad.write_text(text)
        refused = cdms(cli_env, "persisted", "add", str(good), str(bad))
        assert refused.returncode == 1, refused
        assert refused.stderr.startswith("error[BAD_USER_INPUT]"), refused.stderr
        assert name in refused.stderr and named in refused.stderr, refused.stderr
    with make_engine(database_url).connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT count(*) FROM app.persisted_queries WHERE name IN ('products',"
                " 'unknown', 'two', 'mistyped', 'bomb', 'long', 'alias')"
            )
        ).scalar_one()
    assert found == 0


def test_persisted_add_reads_at_most_a_megabyte_of_a_file(cli_env: dict[str, str]) -> None:
    """`cdms persisted add /dev/zero` read without end (4.2 GB in 6 s)."""
    refused = cdms(cli_env, "persisted", "add", "/dev/zero")
    assert refused.returncode == 1, refused
    assert refused.stderr.startswith("error[BAD_USER_INPUT]: /dev/zero is longer than"), refused


def test_persisted_remove_of_one_document_named_twice(
    cli_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    """Its hash and its name (or the same key twice) on one command line name a registered
    document: it is removed, not refused as naming nothing."""
    import hashlib

    doc = tmp_path / "twice.graphql"
    doc.write_text("query Twice { products { totalCount } }\n")
    sha = hashlib.sha256(doc.read_bytes()).hexdigest()
    assert cdms(cli_env, "persisted", "add", str(doc)).returncode == 0
    done = cdms(cli_env, "persisted", "remove", sha.upper(), "twice", "twice")
    assert done.returncode == 0, done
    assert done.stdout.split() == ["removed", sha, "twice"], done.stdout
    with make_engine(database_url).connect() as conn:
        count = "SELECT count(*) FROM app.persisted_queries WHERE sha256 = :h"
        assert conn.execute(sa.text(count), {"h": sha}).scalar_one() == 0


def test_arguments_that_are_not_utf8_are_refused_in_one_line(
    cli_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    """Bytes on the command line that are not UTF-8 (Python keeps them as surrogates) in a
    value that goes to the database: a key's name, a persisted query's key or its file's
    name. psycopg could not encode them: a traceback."""
    not_utf8 = "\udcff"  # the byte 0xff in argv (os.fsencode)
    doc = tmp_path / f"q{not_utf8}.graphql"
    doc.write_text("query Q { products { totalCount } }\n")
    with make_engine(database_url).connect() as conn:
        keys = conn.execute(sa.text("SELECT count(*) FROM app.api_keys")).scalar_one()
    for args in (
        ["apikey", "create", "--role", "analyst", "--name", f"n{not_utf8}"],
        ["persisted", "remove", not_utf8],
        ["persisted", "add", str(doc)],
    ):
        bad = cdms(cli_env, *args)
        assert bad.returncode == 1, bad
        lines = bad.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error[BAD_USER_INPUT]: "), bad.stderr
        assert "not UTF-8" in lines[0]
    with make_engine(database_url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM app.api_keys")).scalar_one() == keys
        found = "SELECT count(*) FROM app.persisted_queries WHERE query LIKE 'query Q %'"
        assert conn.execute(sa.text(found)).scalar_one() == 0


def test_names_with_rich_markup_print_as_written(
    cli_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    """A name holding what rich reads as markup: `[/x]` made `apikey create` crash with a
    MarkupError traceback after the key was stored and before its secret was printed (a
    key nobody could use), and `list` and `revoke` crash the same way; `[link=…]` made a
    name a hyperlink on the operator's terminal. Names print letter for letter."""
    name = "[/x] [link=https://evil.example]hi[/link] [bold]b"
    made = cdms(cli_env, "apikey", "create", "--role", "analyst", "--name", name)
    assert made.returncode == 0, made.stderr
    assert name in made.stdout and "Traceback" not in made.stderr, made
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("cdms_"), made.stdout
    key_id = made.stdout.split("created API key ")[1].split()[0]
    listed = cdms(cli_env, "apikey", "list")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed
    assert "[/x]" in listed.stdout and "[link=" in listed.stdout, listed.stdout
    assert "\x1b]8;" not in listed.stdout and "\x1b]8" not in repr(listed.stdout)  # no link
    revoked = cdms(cli_env, "apikey", "revoke", key_id)
    assert revoked.returncode == 0 and name in revoked.stdout, revoked
    stem = "[bold]q [link=mailto:e]hi[red]"  # a persisted query's name is its file's stem
    doc = tmp_path / f"{stem}.graphql"
    doc.write_text("query MarkupNamed { products { totalCount } }\n")
    added = cdms(cli_env, "persisted", "add", str(doc))
    assert added.returncode == 0 and stem in added.stdout, added
    shown = cdms(cli_env, "persisted", "list")
    assert shown.returncode == 0 and "[link=mailto:e]" in shown.stdout, shown
    gone = cdms(cli_env, "persisted", "remove", stem)
    assert gone.returncode == 0 and stem in gone.stdout, gone


def test_names_with_control_characters_are_refused_and_errors_never_echo_them_raw(
    cli_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    """A key's or a persisted query's name is printed by `list` on an operator's terminal:
    an escape sequence in it (ESC ] … BEL retitles the window, ESC [ 2 J clears it, others
    rewrite what was printed) would run there. Refused when created; and an error quoting
    what was given shows control characters escaped and a long value clipped (as the API's
    errors do), never raw or 5,000 characters long."""
    esc = "\x1b]0;owned\x07\x1b[2J"
    doc = tmp_path / f"q{esc}.graphql"
    doc.write_text("query Q { products { totalCount } }\n")
    with make_engine(database_url).connect() as conn:
        keys = conn.execute(sa.text("SELECT count(*) FROM app.api_keys")).scalar_one()
    for args in (
        ["apikey", "create", "--role", "analyst", "--name", f"n{esc}"],
        ["persisted", "add", str(doc)],
    ):
        bad = cdms(cli_env, *args)
        assert bad.returncode == 1, bad
        lines = bad.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error[BAD_USER_INPUT]: "), bad.stderr
        assert "\x1b" not in bad.stderr and "\x07" not in bad.stderr, bad.stderr
    with make_engine(database_url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM app.api_keys")).scalar_one() == keys
        found = "SELECT count(*) FROM app.persisted_queries WHERE query LIKE 'query Q %'"
        assert conn.execute(sa.text(found)).scalar_one() == 0
    for args in (
        ["persisted", "remove", f"x{esc}"],  # NOT_FOUND quoting the key
        ["apikey", "create", "--role", f"admin{esc}{'r' * 5000}"],  # USAGE quoting the value
    ):
        bad = cdms(cli_env, *args)
        assert bad.returncode in (1, 2), bad
        assert bad.stderr.startswith("error["), bad.stderr
        assert "\x1b" not in bad.stderr and "\x07" not in bad.stderr, bad.stderr
        assert len(bad.stderr) < 1_200, len(bad.stderr)


# a pg_dump that starts a dump (a first chunk on its standard output, its pid in a file),
# then takes its time
_SLOW_PG_DUMP = """#!{python}
import os, sys, time
with open({pid_file!r}, "w") as f:
    f.write(str(os.getpid()))
sys.stdout.buffer.write(b"PGDMP" + bytes(4096))
sys.stdout.flush()
sys.stderr.write('pg_dump: dumping contents of table "app.customers"\\n')
sys.stderr.flush()
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited and not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_backup_stopped_by_a_signal_leaves_no_partial_dump(
    cli_env: dict[str, str], tmp_path: Path, signum: signal.Signals
) -> None:
    """Probe 15, L2: SIGTERM (systemd stop, a CI cancel) or SIGHUP (a closed ssh session)
    during ``cdms db backup`` killed it with no clean-up: the hidden ``.FILE.XXXX.partial``
    (0600, every customer's data) stayed, and pg_dump ran on. Each is handled as Ctrl-C:
    pg_dump stopped, the partial file removed, ``FILE`` as it was, ``error[ABORTED]`` and
    the conventional exit code, 128 + the signal's number (130 for SIGINT)."""
    pid_file = tmp_path / "pg_dump.pid"
    slow = tmp_path / "pg_dump"
    slow.write_text(_SLOW_PG_DUMP.format(python=sys.executable, pid_file=str(pid_file)))
    slow.chmod(0o700)
    out = tmp_path / "out"
    out.mkdir()
    file = out / "cdms.dump"
    file.write_bytes(b"the last good backup")
    started = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import pathlib, db.backup;"
            f" db.backup.pg_bin = lambda name: pathlib.Path({str(slow)!r});"
            " from api.cli import main; main()",
            "db",
            "backup",
            str(file),
        ],
        env=cli_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    dump_pid = 0
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) or not [
            p for p in out.iterdir() if p.name.endswith(".partial") and p.stat().st_size
        ]:
            assert started.poll() is None and time.monotonic() < deadline, started.stderr
            time.sleep(0.05)
        dump_pid = int(pid_file.read_text())
        started.send_signal(signum)
        _, stderr = started.communicate(timeout=30)
        assert started.returncode == 128 + signum, stderr
        assert stderr.startswith("error[ABORTED]:") and len(stderr.splitlines()) == 1, stderr
        assert "Traceback" not in stderr
        assert [p.name for p in out.iterdir()] == ["cdms.dump"]
        assert file.read_bytes() == b"the last good backup"
        deadline = time.monotonic() + 10
        while _alive(dump_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(dump_pid)  # pg_dump stopped too
    finally:
        if started.poll() is None:
            started.kill()
            started.communicate()
        if dump_pid and _alive(dump_pid):
            os.kill(dump_pid, signal.SIGKILL)


def test_backup_refuses_a_target_that_is_not_a_regular_file(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Probe 15, L3: ``cdms db backup out`` with ``out -> /proc/self/fd/1`` (or
    /dev/stdout as root) replaced the link (or the device) with a regular file."""
    out = tmp_path / "out"
    out.symlink_to("/proc/self/fd/1")
    refused = cdms(cli_env, "db", "backup", str(out))
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.startswith("error[BAD_USER_INPUT]") and str(out) in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert out.is_symlink() and refused.stdout.strip() == ""  # (no dump through it)
