"""Alembic environment of the imaging source's state (see :func:`xdsi.db.upgrade`)."""

from alembic import context

from imaging_source.state import metadata

#: Own version table, so the actors may share one database.
VERSION_TABLE = "xdsi_imaging_source_version"
context.configure(connection=context.config.attributes["connection"], target_metadata=metadata,
                  render_as_batch=True, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
