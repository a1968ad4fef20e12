"""``cdms report``: files written, their size and contents, progress, refusals."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from api.report import HEIGHT_PX, WIDTH_PX
from api.report_charts import CHARTS
from tests.cli import cli_environment, run_cdms


def cdms(url: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cdms(cli_environment(url, tmp), *args, timeout=300)


def in_process(
    mp: pytest.MonkeyPatch, cap: pytest.CaptureFixture[str], url: str, tmp: Path, *args: str
) -> tuple[int, str, str]:
    """``cdms`` run in this process (faster than a subprocess): exit code, stdout, stderr."""
    from api.cli import main

    mp.setenv("DATABASE_URL", url)
    mp.setenv("CDMS_DATA_DIR", str(tmp / "data"))
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = cap.readouterr()
    return code, out, err


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG signature and IHDR chunk (standard library only)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def test_report_writes_every_chart_and_an_index(report_url: str, tmp_path: Path) -> None:
    out = tmp_path / "report"
    r = cdms(
        report_url,
        tmp_path,
        "report",
        "--out",
        str(out),
        "--from",
        "2020-01-01",
        "--to",
        "2030-12-31",
    )
    assert r.returncode == 0, r.stderr
    assert "rendering charts" in r.stdout or "rendered" in r.stdout  # rich progress
    assert f"({len(CHARTS)} charts, 2020-01-01 to 2030-12-31)" in r.stdout
    index = (out / "index.html").read_text()
    for c in CHARTS:
        png = out / f"{c.name}.png"
        assert png_size(png) == (WIDTH_PX, HEIGHT_PX) and WIDTH_PX >= 1200
        pixels = mpimg.imread(png)
        assert pixels.shape[:2] == (HEIGHT_PX, WIDTH_PX)
        assert pixels.std() > 0.05  # a drawn chart, not a blank canvas
        assert f'src="{c.name}.png"' in index and c.title in index
    assert index.count('class="finding"') == len(CHARTS)
    assert "No data" not in index


def test_an_empty_period_still_renders_and_says_so(report_url: str, tmp_path: Path) -> None:
    out = tmp_path / "empty"
    r = cdms(
        report_url,
        tmp_path,
        "report",
        "--out",
        str(out),
        "--from",
        "1990-01-01",
        "--to",
        "1990-12-31",
    )
    assert r.returncode == 0, r.stderr
    index = (out / "index.html").read_text()
    assert index.count("No data in this period.") == len(CHARTS)
    assert all(png_size(out / f"{c.name}.png") == (WIDTH_PX, HEIGHT_PX) for c in CHARTS)


def test_bad_input_is_one_error_line_and_writes_nothing(
    report_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "never"
    cases = [
        (("--from", "2025-13-01"), "error[BAD_USER_INPUT]: --from must be a date YYYY-MM-DD"),
        (("--to", "yesterday"), "error[BAD_USER_INPUT]: --to must be a date YYYY-MM-DD"),
        (("--from", "2025-02-01", "--to", "2025-01-01"), "error[BAD_USER_INPUT]: --from"),
        # the first and last days of the calendar have no day before / after (a traceback)
        (("--from", "0001-01-01"), "error[BAD_USER_INPUT]: --from must be a date between"),
        (("--to", "9999-12-31"), "error[BAD_USER_INPUT]: --to must be a date between"),
        # the monthly chart compares each day with the year before: year 1 has none (it was
        # let through and failed in the middle of rendering, in the cube's words)
        (("--from", "0001-01-02"), "error[BAD_USER_INPUT]: --from must be a date between"),
        (("--from", "0001-12-31"), "error[BAD_USER_INPUT]: --from must be a date between"),
        (("--to", "0001-01-02"), "error[BAD_USER_INPUT]: --to must be a date between"),
        # the day after it is the cube's last, which it refuses to compute with
        (("--to", "9999-12-30"), "error[BAD_USER_INPUT]: --to must be a date between"),
    ]
    for args, message in cases:
        code, _, err = in_process(
            monkeypatch, capsys, report_url, tmp_path, "report", "--out", str(out), *args
        )
        assert code == 1 and err.startswith(message), err
        assert len(err.strip().splitlines()) == 1
    afile = tmp_path / "a-file"
    afile.write_text("x")
    code, _, err = in_process(
        monkeypatch, capsys, report_url, tmp_path, "report", "--out", str(afile)
    )
    assert code == 1 and "is not a folder" in err
    # an empty --out (an unset shell variable) is not the current folder, where it wrote
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    code, _, err = in_process(monkeypatch, capsys, report_url, tmp_path, "report", "--out", "")
    assert code == 1 and err.startswith("error[BAD_USER_INPUT]: --out is empty"), err
    assert not any(here.iterdir())
    code, _, err = in_process(monkeypatch, capsys, report_url, tmp_path, "report")
    assert code == 2 and err.startswith("error[USAGE]")
    assert not out.exists()


def test_an_unloaded_warehouse_is_refused(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "r"
    code, _, err = in_process(
        monkeypatch, capsys, database_url, tmp_path, "report", "--out", str(out)
    )
    assert code == 1
    assert err.startswith("error[WAREHOUSE_EMPTY]: the warehouse was never loaded")
    assert not out.exists()
