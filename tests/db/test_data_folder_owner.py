"""A data folder cdms finds by itself (the nearest ``.cdms`` in the working folder or a
parent, or ``./.cdms``) is used only when it is the user's own: owned by them and writable
by no one else. Another local user could otherwise plant ``/tmp/.cdms`` whose
``postmaster.pid`` names their own server, and receive the seed data and the admin keys of
whoever runs ``cdms`` below ``/tmp`` (git's CVE-2022-24765 pattern; probe 13, M3).

A planted folder found by the search is skipped with a warning, for ``./.cdms`` (it stopped
every command below it, and its error suggested naming the planted folder in
``CDMS_DATA_DIR``: probe 15, M3); with ``DATABASE_URL`` set nothing is searched for."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from db.config import DbSettings, resolve_data_dir
from db.errors import DataDirError
from tests.cli import run_cdms
from tests.db.test_cli_foundation import one_line_error
from tests.reliability._server import free_port, stop, wait_healthy

OTHER_UID = 1  # daemon: a user that is not the one running the tests


def _cluster(folder: Path) -> Path:
    """A ``.cdms`` in ``folder`` that holds a cluster, as the search sees one."""
    (folder / ".cdms" / "pg").mkdir(parents=True)
    (folder / ".cdms" / "pg" / "PG_VERSION").write_text("16\n")
    return folder / ".cdms"


def _planted(tmp_path: Path) -> tuple[Path, Path]:
    """A ``.cdms`` with a cluster another user could have put there (another user's as root,
    else writable by everyone), and a working folder below it."""
    planted = _cluster(tmp_path / "shared")
    if os.geteuid() == 0:
        for path in (planted, planted / "pg"):
            os.chown(path, OTHER_UID, OTHER_UID)
    else:
        planted.chmod(0o777)
    work = tmp_path / "shared" / "work"
    work.mkdir()
    return planted, work


def _skipped(cwd: Path, folder: Path) -> str:
    """The search from ``cwd`` skips ``folder`` with one warning and takes ``./.cdms``."""
    said: list[str] = []
    assert resolve_data_dir(None, cwd, warn=said.append) == (cwd / ".cdms", "default")
    assert len(said) == 1 and "\n" not in said[0], said
    assert str(folder) in said[0] and "not used" in said[0], said[0]
    assert "CDMS_DATA_DIR" not in said[0], said[0]  # never "use it anyway"
    return said[0]


def _refused(cwd: Path, folder: Path) -> str:
    with pytest.raises(DataDirError) as info:
        resolve_data_dir(None, cwd, warn=pytest.fail)
    message = str(info.value)
    assert str(folder) in message and "CDMS_DATA_DIR" in message, message
    assert f"CDMS_DATA_DIR={folder}" not in message, message  # never the unsafe folder
    return message


@pytest.mark.skipif(os.geteuid() != 0, reason="making a folder another user's needs root")
def test_a_found_data_folder_of_another_user_is_skipped(tmp_path: Path) -> None:
    planted = _cluster(tmp_path / "shared")
    work = tmp_path / "shared" / "work"
    work.mkdir()
    for path in (planted, planted / "pg"):
        os.chown(path, OTHER_UID, OTHER_UID)
    assert f"uid {OTHER_UID}" in _skipped(work, planted)
    os.chown(planted, 0, 0)  # the cluster alone another's
    assert f"uid {OTHER_UID}" in _skipped(work, planted / "pg")
    # the cluster of an embedded server started as root belongs to pgserver's own user
    users = {u.pw_name: u for u in pwd.getpwall()}
    if "pgserver" in users:
        os.chown(planted / "pg", users["pgserver"].pw_uid, users["pgserver"].pw_gid)
        assert resolve_data_dir(None, work, warn=pytest.fail) == (planted, "found")
    # ./.cdms with no cluster yet, made by another user: not the default either
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / ".cdms").mkdir(parents=True)
    os.chown(elsewhere / ".cdms", OTHER_UID, OTHER_UID)
    _refused(elsewhere, elsewhere / ".cdms")
    # named by CDMS_DATA_DIR it is the operator's choice
    assert resolve_data_dir(str(planted), work) == (planted, "CDMS_DATA_DIR")


@pytest.mark.parametrize("mode", [0o775, 0o757], ids=["group-writable", "other-writable"])
@pytest.mark.parametrize("which", [".cdms", ".cdms/pg"])
def test_a_found_data_folder_writable_by_others_is_skipped(
    tmp_path: Path, which: str, mode: int
) -> None:
    project = tmp_path / "project"
    _cluster(project)
    deep = project / "docs"
    deep.mkdir()
    (project / which).chmod(mode)
    assert f"{mode:04o}" in _skipped(deep, project / which)
    assert resolve_data_dir(str(project / ".cdms"), deep)[1] == "CDMS_DATA_DIR"
    (project / which).chmod(0o700)
    assert resolve_data_dir(None, deep, warn=pytest.fail) == (project / ".cdms", "found")


@pytest.mark.parametrize("mode", [0o2775, 0o757], ids=["group-writable", "other-writable"])
@pytest.mark.parametrize("which", [".cdms", ".cdms/pg"])
def test_a_working_folders_data_folder_writable_by_others_is_refused_with_the_fix(
    tmp_path: Path, which: str, mode: int
) -> None:
    """``./.cdms`` is the folder the search ends with: no other to fall back to. The error
    says how to make it the user's alone (probe 15, L4), never to take it as it is."""
    project = tmp_path / "project"
    _cluster(project)
    (project / which).chmod(mode)
    message = _refused(project, project / ".cdms")
    assert f"{mode:04o}" in message and f"chmod go-w {project / which}" in message, message
    assert "was found" not in message, message
    (project / ".cdms" / "pg" / "PG_VERSION").unlink()  # a ./.cdms with no cluster yet
    message = _refused(project, project / ".cdms")
    assert f"chmod go-w {project / which}" in message, message


def test_with_database_url_no_data_folder_is_searched_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, work = _planted(tmp_path)
    monkeypatch.chdir(work)
    for name in ("DATABASE_URL", "CDMS_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = DbSettings(database_url="postgresql://postgres@127.0.0.1:5432/x")
    assert settings.used_data_dir is None  # nothing to lock, nothing refused
    named = DbSettings(database_url="postgresql://u@h/x", data_dir_env=str(tmp_path / "mine"))
    assert named.used_data_dir == tmp_path / "mine"
    assert DbSettings().used_data_dir == work / ".cdms"  # the embedded server's


def test_the_cli_skips_a_planted_data_folder_with_a_warning(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = {k: v for k, v in cli_env.items() if k not in {"DATABASE_URL", "CDMS_DATA_DIR"}}
    planted, work = _planted(tmp_path)
    proc = run_cdms(env, "etl", "run", cwd=work)
    warning, error = proc.stderr.strip().splitlines()
    assert warning.startswith("warning: ") and str(planted) in warning, warning
    assert "CDMS_DATA_DIR" not in warning, warning
    # ./.cdms holds no cluster: the usual "run cdms serve first", naming where it looked
    one_line_error(subprocess.CompletedProcess(proc.args, 1, "", error), "NO_DATABASE", 1)
    assert str(work / ".cdms") in error, error
    assert proc.returncode == 1 and not (work / ".cdms").exists()


def test_serve_with_database_url_ignores_a_planted_data_folder(
    cli_env: dict[str, str], tmp_path: Path, fresh_database: Callable[[], str]
) -> None:
    """The planted folder stopped ``cdms serve`` with ``DATABASE_URL`` set too: it took its
    lock in the data folder (probe 15, M3). (A database of its own: the server's start-up
    loads the warehouse, which other tests of the session's database expect unloaded.)"""
    env = {k: v for k, v in cli_env.items() if k != "CDMS_DATA_DIR"}
    env["DATABASE_URL"] = fresh_database()
    planted, work = _planted(tmp_path)
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from api.cli import main; main()",
             "serve", "--port", str(port), "--no-seed-demo"],
            env=env | {"CDMS_DEMO_OPEN": "1", "CDMS_ETL_MODE": "off"},
            cwd=work, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}", timeout=120, ready=False)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        stop(proc)
    out = log.read_text()
    assert "DATA_DIR" not in out and str(planted) not in out, out
    assert not (planted / "serve.lock").exists() and not (work / ".cdms").exists()
