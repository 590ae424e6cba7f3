"""Document content storage behind one small interface (:class:`~repository.store.base.DocumentStore`):
the filesystem (default, content-addressed, sharded folders) and S3-compatible object storage."""

from repository.store.base import (
    DocumentStore,
    StoredContent,
    StoreUnavailable,
    open_store,
)

__all__ = ["DocumentStore", "StoreUnavailable", "StoredContent", "open_store"]
