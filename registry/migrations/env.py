"""Alembic environment: runs on the connection handed over by :func:`xdsi.db.upgrade`,
or on ``sqlalchemy.url`` when run from the ``alembic`` command line."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from registry.storage.schema import metadata

config = context.config
#: Own version table, so the registry and the repository may share one database.
VERSION_TABLE = "xdsi_registry_version"
connection = config.attributes.get("connection")
if connection is not None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                      version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = engine_from_config(config.get_section(config.config_ini_section) or {}, prefix="sqlalchemy.",
                                poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True,
                          version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()
