"""Database layer: settings, embedded PostgreSQL, engines, migrations, seed data."""
