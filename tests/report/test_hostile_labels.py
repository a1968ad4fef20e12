"""``cdms report`` on names an admin (or an import of a customer's signup) can set: a
country, a product's name or category holding matplotlib mathtext (``$\\foo$``), a leading
``_`` (matplotlib's "leave out of the legend"), terminal escape sequences and rich markup.
Each is drawn as the text it is, and printed with its control characters escaped."""

from __future__ import annotations

import html
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import matplotlib as mpl
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text
from sqlalchemy.engine import Engine

from api.report import draw, house_style
from api.report_charts import CHARTS, Period, chart
from db.engine import make_engine
from db.seed import seed
from etl import pipeline, runner
from tests.report.test_cli import cdms, in_process, png_size
from tests.semantic.conftest import sql

# an unknown mathtext command: matplotlib raised at savefig (a 96-line traceback)
COUNTRY = "Ger$\\foo$many"
# valid mathtext (drawn as "up" raised) and a leading "_" (left out of the legend)
COUNTRY_2 = "_Nowhere $^{up}$"
CATEGORY_HIDDEN = "_hidden $x^2$ tools"
# an OSC title, CSI colours, rich markup and an emoji code
CATEGORY_ESC = "Desks \x1b]0;PWNED-TITLE\x07\x1b[31mRED\x1b[0m [red]x[/red] :pile_of_poo:"
# a clear screen, a right-to-left override, a rich link, mathtext and HTML
PRODUCT = (
    "Nordform \x1b[2J\u202egnp.exe [link=https://evil.example]click[/link] $\\mathrm{M}$ <b>130</b>"
)
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def escaped(text: str) -> str:
    """``text`` as the CLI shows it: each control character as its Python escape."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@pytest.fixture(scope="module")
def hostile_url(clone_database: Callable[[str], str]) -> Iterator[str]:
    url = clone_database("report_hostile")
    seed(url, 80, 800, 11)
    sql(
        url,
        "UPDATE app.customers SET country = CASE WHEN id %% 2 = 0 THEN %s ELSE %s END",
        (COUNTRY, COUNTRY_2),
    )
    sql(
        url,
        "UPDATE app.products SET category = CASE WHEN id %% 2 = 0 THEN %s ELSE %s END,"
        " name = %s || ' #' || id",
        (CATEGORY_HIDDEN, CATEGORY_ESC, PRODUCT),
    )
    pipeline.run(url)
    yield url
    runner.dispose(url)


@pytest.fixture(scope="module")
def hostile_engine(hostile_url: str) -> Engine:
    return make_engine(hostile_url)


def texts(fig: Figure) -> list[Text]:
    fig.draw_without_rendering()  # ticks and their labels are made when drawn
    return [t for t in fig.findobj(Text) if t.get_text()]


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("top_categories", [CATEGORY_HIDDEN, CATEGORY_ESC]),  # the legend
        ("top_products", [PRODUCT]),  # the bars' ticks (a prefix: "#id" follows)
        ("returns_by_category", [CATEGORY_HIDDEN, CATEGORY_ESC]),
        ("customers_by_country", [COUNTRY, COUNTRY_2]),
    ],
)
def test_every_label_is_drawn_as_the_plain_text_it_is(
    hostile_engine: Engine, name: str, labels: list[str]
) -> None:
    c = chart(name)
    with hostile_engine.connect() as conn:
        df = c.data(conn, Period())
    with house_style():
        drawn = texts(draw(c, df))
    shown = [t.get_text() for t in drawn]
    for label in labels:
        want = escaped(label)
        assert any(s.startswith(want) for s in shown), (want, shown)
    for t in drawn:
        assert not t.get_parse_math(), t.get_text()  # "$...$" is not read as math
        assert not CONTROL.search(t.get_text()), t.get_text()  # no glyph-less bytes
    assert mpl.rcParams["text.parse_math"] is True  # only while rendering


def test_report_on_hostile_names_writes_everything_and_prints_them_inert(
    hostile_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    r = cdms(hostile_url, tmp_path, "report", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr == ""  # no traceback, and no matplotlib warning quoting a name raw
    index = (out / "index.html").read_text(encoding="utf-8")
    for c in CHARTS:
        assert png_size(out / f"{c.name}.png")[0] > 0
        assert f'src="{c.name}.png"' in index
    assert index.count('class="finding"') == len(CHARTS)
    # the findings name them, escaped for HTML and with their control characters spelled out
    assert html.escape(f"Top product: {escaped(PRODUCT)} #") in index
    assert html.escape(escaped(CATEGORY_ESC)) in index
    assert html.escape(COUNTRY) in index or html.escape(COUNTRY_2) in index
    assert not CONTROL.search(index)
    # the terminal: no control byte, rich markup and emoji codes printed literally
    printed = r.stdout
    assert not CONTROL.search(printed), printed
    assert f"Top product: {escaped(PRODUCT)} #" in printed
    assert "[red]x[/red] :pile_of_poo:" in printed and "\N{PILE OF POO}" not in printed
    assert "[link=https://evil.example]click[/link]" in printed
    assert "\\x1b[2J" in printed and "\\u202e" in printed
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no leftovers


def test_a_chart_that_cannot_be_drawn_is_one_error_line_and_writes_nothing(
    hostile_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Whatever rendering still meets (here: savefig refusing the fifth chart) is the CLI's
    one line, and the folder keeps what it held: no half-written report."""
    calls = {"n": 0}
    real = Figure.savefig

    def savefig(self: Figure, *args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 5:
            raise ValueError("cannot draw \x1b[2J this label")
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Figure, "savefig", savefig)
    fresh = tmp_path / "fresh"
    code, _, err = in_process(
        monkeypatch, capsys, hostile_url, tmp_path, "report", "--out", str(fresh)
    )
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error[RENDER]: "), err
    assert "returns_by_category" in lines[0] and "\\x1b[2J" in lines[0], err
    assert not fresh.exists()
    # a folder holding an earlier report keeps it whole
    calls["n"] = 0
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "index.html").write_text("earlier")
    (kept / "monthly_sales.png").write_bytes(b"earlier")
    code, _, err = in_process(
        monkeypatch, capsys, hostile_url, tmp_path, "report", "--out", str(kept)
    )
    assert code == 1 and err.startswith("error[RENDER]: "), err
    assert sorted(p.name for p in kept.iterdir()) == ["index.html", "monthly_sales.png"]
    assert (kept / "index.html").read_text() == "earlier"
    assert (kept / "monthly_sales.png").read_bytes() == b"earlier"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folder


def test_a_report_into_a_folder_on_another_filesystem_is_written(
    hostile_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The second hostile review: the report was drawn in a temporary folder beside --out
    and moved in, which failed ('Invalid cross-device link', error[OS]) when --out is a
    mounted volume or a link to another filesystem. It is drawn inside --out now."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.fail("this test needs /dev/shm on a filesystem of its own (tmpfs)")
    target = Path(tempfile.mkdtemp(prefix="cdms-report-", dir=shm))
    try:
        link = tmp_path / "mounted"
        link.symlink_to(target, target_is_directory=True)
        code, _, err = in_process(
            monkeypatch, capsys, hostile_url, tmp_path, "report", "--out", str(link)
        )
        assert code == 0, err
        names = sorted(p.name for p in target.iterdir())
        assert "index.html" in names and len(names) == len(CHARTS) + 1, names
    finally:
        shutil.rmtree(target, ignore_errors=True)
