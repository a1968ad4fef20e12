"""Errors of the seed."""

from __future__ import annotations

from db.errors import CdmsError


class SeedCheckError(CdmsError):
    """The generated data broke an invariant (a bug in the generator); nothing was written."""

    code = "SEED_CHECK"
