"""Alembic environment of the repository ledger (see :func:`xdsi.db.upgrade`)."""

from alembic import context

from repository.ledger import metadata

#: Own version table, so the registry and the repository may share one database.
VERSION_TABLE = "xdsi_repository_version"
context.configure(connection=context.config.attributes["connection"], target_metadata=metadata,
                  render_as_batch=True, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
