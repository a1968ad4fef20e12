"""cdms semantic package."""
