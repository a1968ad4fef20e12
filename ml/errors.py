"""Expected failures of the model layer, each with a stable public code."""

from __future__ import annotations

from db.errors import CdmsError


class ModelUnavailableError(CdmsError):
    """No active version of the model is loaded (none trained, or none activated)."""

    code = "MODEL_UNAVAILABLE"


class InvalidModelError(CdmsError):
    """A registry row whose ONNX bytes do not load, or do not match the model's spec."""

    code = "INVALID_MODEL"


class InsufficientDataError(CdmsError):
    """The warehouse holds too few (or too uniform) events to train and evaluate a model."""

    code = "INSUFFICIENT_DATA"


class NotInWarehouseError(CdmsError):
    """No features for the object: neither the warehouse nor its operational rows (online
    features) have it, i.e. it no longer exists. (Before online features, the code of an
    object not loaded yet; it kept its name.)"""

    code = "NOT_IN_WAREHOUSE"
