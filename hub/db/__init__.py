"""SQL store: models, engine, migrations."""
