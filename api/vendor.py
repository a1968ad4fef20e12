"""Browser libraries vendored from the npm registry at pinned versions, with their licences.

The dashboard and GraphiQL pages load nothing from another origin: React, GraphiQL, its
explorer plugin and plotly.js are files of this package, taken unchanged from the npm
tarballs named here. ``python -m api.vendor`` fetches them again (``npm pack``, so npm's
own registry settings apply) and checks each file against its pinned sha256;
``tests/api/test_vendor.py`` checks the files in the tree against the same digests.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

API = Path(__file__).parent
GRAPHIQL_VENDOR = API / "graphiql" / "static" / "vendor"
DASHBOARD_VENDOR = API / "dashboard" / "static" / "vendor"


@dataclass(frozen=True)
class Vendored:
    """A file of an npm package, copied unchanged (a licence has no pinned ``sha256``)."""

    package: str
    version: str
    member: str  # path inside the npm tarball (under ``package/``)
    dest: Path
    sha256: str = ""

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"


FILES: tuple[Vendored, ...] = (
    Vendored(
        "react",
        "18.3.1",
        "umd/react.production.min.js",
        GRAPHIQL_VENDOR / "react.production.min.js",
        "d949f1c3687aedadcedac85261865f29b17cd273997e7f6b2bfc53b2f9d4c4dd",
    ),
    Vendored(
        "react-dom",
        "18.3.1",
        "umd/react-dom.production.min.js",
        GRAPHIQL_VENDOR / "react-dom.production.min.js",
        "35f4f974f4b2bcd44da73963347f8952e341f83909e4498227d4e26b98f66f0d",
    ),
    Vendored(
        "graphiql",
        "3.9.0",
        "graphiql.min.js",
        GRAPHIQL_VENDOR / "graphiql.min.js",
        "a330a2be1d2389486840a9d0a834767d9083a23f105879e0de54e4fce83d3513",
    ),
    Vendored(
        "graphiql",
        "3.9.0",
        "graphiql.min.css",
        GRAPHIQL_VENDOR / "graphiql.min.css",
        "bdddd50aac5bdb0edd83e5c862ba2fed9db2964e4c75d4655ab62b0a7d5bd730",
    ),
    Vendored(
        "@graphiql/plugin-explorer",
        "3.2.6",
        "dist/index.umd.js",
        GRAPHIQL_VENDOR / "plugin-explorer.umd.js",
        "9a29da99ff466480eb973a0c5c3bd4e790ca93a0c2e43ea935cb480d614cc52d",
    ),
    Vendored(
        "@graphiql/plugin-explorer",
        "3.2.6",
        "dist/style.css",
        GRAPHIQL_VENDOR / "plugin-explorer.css",
        "f9f76eb37ed07f770420a883dd5bd3be031d73ca8e013d4d1942847afcf997a9",
    ),
    Vendored(
        "plotly.js-dist-min",
        "4.1.1",
        "plotly.min.js",
        DASHBOARD_VENDOR / "plotly.min.js",
        "3b6e15d45dbb7fca5bd2094291e961ddc5472cd887009e6009a56dab668d721f",
    ),
)

# @graphiql/plugin-explorer ships no licence file: it is MIT (its package.json) from the
# graphiql repository, and bundles graphiql-explorer (MIT), whose licence is kept too
LICENCES: tuple[Vendored, ...] = (
    Vendored("react", "18.3.1", "LICENSE", GRAPHIQL_VENDOR / "LICENSE.react.txt"),
    Vendored("react-dom", "18.3.1", "LICENSE", GRAPHIQL_VENDOR / "LICENSE.react-dom.txt"),
    Vendored("graphiql", "3.9.0", "LICENSE", GRAPHIQL_VENDOR / "LICENSE.graphiql.txt"),
    Vendored(
        "graphiql-explorer", "0.9.0", "LICENSE", GRAPHIQL_VENDOR / "LICENSE.graphiql-explorer.txt"
    ),
    Vendored("plotly.js-dist-min", "4.1.1", "LICENSE", DASHBOARD_VENDOR / "LICENSE.plotly.js.txt"),
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def problems() -> list[str]:
    """Each vendored file that is missing or differs from its pinned digest."""
    found: list[str] = []
    for f in FILES:
        if not f.dest.is_file():
            found.append(f"{f.dest.relative_to(API)}: missing ({f.spec} {f.member})")
        elif sha256(f.dest) != f.sha256:
            found.append(f"{f.dest.relative_to(API)}: not {f.spec} {f.member} (sha256 differs)")
    found.extend(
        f"{lic.dest.relative_to(API)}: licence of {lic.package} missing"
        for lic in LICENCES
        if not lic.dest.is_file()
    )
    return found


def _unpack(spec: str, into: Path) -> Path:
    """``npm pack`` one package into ``into``; the folder its tarball unpacks to."""
    out = subprocess.run(
        ["npm", "pack", "--silent", spec],
        cwd=into,
        check=True,
        capture_output=True,
        text=True,
    )
    tarball = into / out.stdout.strip().splitlines()[-1]
    target = into / tarball.stem
    with tarfile.open(tarball) as tar:
        tar.extractall(target, filter="data")
    return target / "package"


def refresh() -> None:
    """Fetch every pinned file and licence again; fail on a digest that differs."""
    with tempfile.TemporaryDirectory() as tmp:
        unpacked: dict[str, Path] = {}
        for item in (*FILES, *LICENCES):
            if item.spec not in unpacked:
                unpacked[item.spec] = _unpack(item.spec, Path(tmp))
            item.dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(unpacked[item.spec] / item.member, item.dest)
    bad = problems()
    for line in bad:
        print(line, file=sys.stderr)
    if bad:
        raise SystemExit(1)
    for f in FILES:
        print(f"{f.spec:34} {f.member:34} {f.sha256}")


if __name__ == "__main__":
    refresh()
