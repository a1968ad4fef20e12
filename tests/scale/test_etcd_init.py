"""deploy/ha/etcd-init.sh on Debian's etcd 3.4: whatever state it finds, it ends with root
and patroni logging in with exactly the passwords deploy/.env gives, or it fails (hostile
review 23, M1: it reported success while Patroni, which sends its password as given, could
not log in, and the cluster had no leader)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scale.topology import SECRETS, Etcd, executable

pytestmark = [
    pytest.mark.scale,
    pytest.mark.skipif(
        executable("etcd") is None or executable("etcdctl") is None,
        reason="not installed: etcd-server, etcd-client (apt-get install; .ci/run does)",
    ),
]
ROOT, PATRONI = SECRETS["CDMS_ETCD_ROOT_PASSWORD"], SECRETS["CDMS_ETCD_PATRONI_PASSWORD"]


@pytest.fixture
def etcd() -> Iterator[Etcd]:
    server = Etcd(Path(tempfile.mkdtemp(prefix="cdms-etcd-")))
    try:
        server.start(init=False)
        yield server
    finally:
        server.close()


def _logs_in(etcd: Etcd, user: str, password: str) -> bool:
    args = ("user", "get", "patroni") if user == "root" else ("get", "/service/", "--prefix")
    return etcd.ctl(*args, user=f"{user}:{password}").returncode == 0


def _ok(etcd: Etcd, **secrets: str) -> str:
    done = etcd.init(**secrets)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_first_run_then_a_second_leave_both_users_logging_in(etcd: Etcd) -> None:
    assert "authentication enabled" in _ok(etcd)
    assert "already enabled" in _ok(etcd)
    assert _logs_in(etcd, "root", ROOT) and _logs_in(etcd, "patroni", PATRONI)
    assert etcd.ctl("get", "/service/", "--prefix").returncode != 0  # anonymous


def test_patronis_password_changed_in_the_env_file_is_set(etcd: Etcd) -> None:
    _ok(etcd)
    _ok(etcd, CDMS_ETCD_PATRONI_PASSWORD="rotated2026x")
    assert _logs_in(etcd, "patroni", "rotated2026x")
    assert not _logs_in(etcd, "patroni", PATRONI)


def test_a_first_run_cut_short_is_finished_with_the_passwords_of_the_next(etcd: Etcd) -> None:
    # users made with other passwords, authentication never turned on
    for user in ("root", "patroni"):
        made = etcd.ctl("user", "add", f"{user}:old{user}123")
        assert made.returncode == 0, made.stderr
    _ok(etcd)
    assert _logs_in(etcd, "root", ROOT) and _logs_in(etcd, "patroni", PATRONI)


def test_a_wrong_root_password_fails(etcd: Etcd) -> None:
    _ok(etcd)
    done = etcd.init(CDMS_ETCD_ROOT_PASSWORD="wrong0000")
    assert done.returncode != 0 and "refuses root's password" in done.stderr


@pytest.mark.parametrize("password", ["secret pw ", " lead", "tab\tin", "semi;colon"])
def test_a_password_beyond_letters_and_digits_is_refused_before_anything(
    etcd: Etcd, password: str
) -> None:
    """etcdctl's prompt trims white space: "secret pw " was stored as "secret pw" while
    Patroni sent the exact value."""
    done = etcd.init(CDMS_ETCD_PATRONI_PASSWORD=password)
    assert done.returncode != 0 and "letters and digits only" in done.stderr
    assert etcd.ctl("user", "list").returncode == 0  # nothing done: authentication still off
