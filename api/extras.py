"""The optional parts of cdms (``pyproject.toml`` extras) and a clear failure without them.

``pip install cdms`` (or ``cdms[serve]``) serves, loads the warehouse and scores against
``DATABASE_URL``: the production image. Training, the report, the demo data and the
embedded PostgreSQL each need an extra; ``cdms[demo]`` has them all.
"""

from __future__ import annotations

from db.errors import MissingExtraError
from db.server import importable

# extra -> the modules it brings that cdms imports
EXTRAS: dict[str, tuple[str, ...]] = {
    "serve": ("uvicorn", "httptools"),
    "embedded": ("pgserver",),
    "train": ("pandas", "sklearn", "skl2onnx"),
    "report": ("pandas", "matplotlib", "seaborn"),
    "seed": ("faker",),
}


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [m for m in EXTRAS[extra] if not importable(m)]


def installed(extra: str) -> bool:
    return not missing(extra)


def hint(extra: str) -> str:
    return f"pip install 'cdms[{extra}]' (or cdms[demo] for everything)"


def require(extra: str, what: str) -> None:
    """Raise MissingExtraError naming the extra ``what`` needs when it is not installed."""
    absent = missing(extra)
    if absent:
        raise MissingExtraError(
            f"{what} needs the '{extra}' extra ({', '.join(absent)} not installed): {hint(extra)}",
            extra=extra,
        )
