"""A data folder cdms finds by itself (the nearest ``.cdms`` in the working folder or a
parent, or ``./.cdms``) is used only when it is the user's own: owned by them and writable
by no one else. Another local user could otherwise plant ``/tmp/.cdms`` whose
``postmaster.pid`` names their own server, and receive the seed data and the admin keys of
whoever runs ``cdms`` below ``/tmp`` (git's CVE-2022-24765 pattern; probe 13, M3)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from db.config import resolve_data_dir
from db.errors import DataDirError
from tests.cli import run_cdms
from tests.db.test_cli_foundation import one_line_error

OTHER_UID = 1  # daemon: a user that is not the one running the tests


def _cluster(folder: Path) -> Path:
    """A ``.cdms`` in ``folder`` that holds a cluster, as the search sees one."""
    (folder / ".cdms" / "pg").mkdir(parents=True)
    (folder / ".cdms" / "pg" / "PG_VERSION").write_text("16\n")
    return folder / ".cdms"


def _refused(cwd: Path, folder: Path) -> str:
    with pytest.raises(DataDirError) as info:
        resolve_data_dir(None, cwd)
    message = str(info.value)
    assert str(folder) in message and "CDMS_DATA_DIR" in message, message
    return message


@pytest.mark.skipif(os.geteuid() != 0, reason="making a folder another user's needs root")
def test_a_found_data_folder_of_another_user_is_not_used(tmp_path: Path) -> None:
    planted = _cluster(tmp_path / "shared")
    work = tmp_path / "shared" / "work"
    work.mkdir()
    for path in (planted, planted / "pg"):
        os.chown(path, OTHER_UID, OTHER_UID)
    assert f"uid {OTHER_UID}" in _refused(work, planted)
    os.chown(planted, 0, 0)  # the cluster alone another's
    assert f"uid {OTHER_UID}" in _refused(work, planted / "pg")
    # the cluster of an embedded server started as root belongs to pgserver's own user
    users = {u.pw_name: u for u in pwd.getpwall()}
    if "pgserver" in users:
        os.chown(planted / "pg", users["pgserver"].pw_uid, users["pgserver"].pw_gid)
        assert resolve_data_dir(None, work) == (planted, "found")
    # ./.cdms with no cluster yet, made by another user: not the default either
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / ".cdms").mkdir(parents=True)
    os.chown(elsewhere / ".cdms", OTHER_UID, OTHER_UID)
    _refused(elsewhere, elsewhere / ".cdms")
    # named by CDMS_DATA_DIR it is the operator's choice
    assert resolve_data_dir(str(planted), work) == (planted, "CDMS_DATA_DIR")


@pytest.mark.parametrize("mode", [0o775, 0o757], ids=["group-writable", "other-writable"])
@pytest.mark.parametrize("which", [".cdms", ".cdms/pg"])
def test_a_found_data_folder_writable_by_others_is_not_used(
    tmp_path: Path, which: str, mode: int
) -> None:
    project = tmp_path / "project"
    _cluster(project)
    deep = project / "docs"
    deep.mkdir()
    (project / which).chmod(mode)
    message = _refused(deep, project / which)
    assert f"{mode:04o}" in message, message
    assert resolve_data_dir(str(project / ".cdms"), deep)[1] == "CDMS_DATA_DIR"
    (project / which).chmod(0o700)
    assert resolve_data_dir(None, deep) == (project / ".cdms", "found")


def test_the_cli_refuses_a_data_folder_others_can_write_in_one_line(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = {k: v for k, v in cli_env.items() if k not in {"DATABASE_URL", "CDMS_DATA_DIR"}}
    planted = _cluster(tmp_path / "shared")
    planted.chmod(0o777)
    work = tmp_path / "shared" / "work"
    work.mkdir()
    line = one_line_error(run_cdms(env, "etl", "run", cwd=work), "DATA_DIR", 1)
    assert str(planted) in line and "CDMS_DATA_DIR" in line, line
