"""ITI-18 Registry Stored Query: the 14 stored queries of ITI TF-2a 3.18.4.1.2.3.7.

:func:`run_stored_query` answers a ``query:AdhocQueryRequest``. Modules: :mod:`.params` (value syntax,
checks), :mod:`.specs` (the parameter tables), :mod:`.filters` (SQL predicates), :mod:`.queries` (the
queries), :mod:`.response` (the ``AdhocQueryResponse`` text).
"""

from registry.storedquery.run import run_stored_query

__all__ = ["run_stored_query"]
