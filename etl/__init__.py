"""cdms etl package."""
