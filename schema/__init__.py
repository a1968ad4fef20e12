"""cdms schema package."""
