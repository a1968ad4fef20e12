"""ETL failures, each with a stable code (printed by the CLI as ``error[CODE]: message``)."""

from __future__ import annotations

from db.errors import CdmsError, ConflictError


class EtlBusyError(ConflictError):
    """Another ETL run holds the advisory lock."""


class MissingDimensionError(CdmsError):
    """A fact row names a customer or product that its dimension does not have."""

    code = "MISSING_DIMENSION"


class StepFailedError(CdmsError):
    """A step failed for another reason; its transaction was rolled back."""

    code = "ETL_STEP_FAILED"


class CheckFailedError(CdmsError):
    """A data-quality check failed after the load."""

    code = "CHECK_FAILED"
