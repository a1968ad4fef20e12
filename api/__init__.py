"""Entry points: the ASGI app, settings, and the ``cdms`` command."""
