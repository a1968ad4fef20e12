"""cdms ml package."""
