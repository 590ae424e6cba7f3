"""ITI-18 Registry Stored Query: request in, ``query:AdhocQueryResponse`` out."""

from __future__ import annotations

import logging

from lxml import etree
from sqlalchemy import Connection

from registry.storage import schema as s
from registry.storedquery import filters, specs
from registry.storedquery.params import LEAF_CLASS, check, metadata_level, read_request
from registry.storedquery.queries import (
    KIND,
    PATIENT,
    QUERIES,
    SINGLE_SELECT,
    Ctx,
    too_many,
)
from registry.storedquery.response import adhoc_query_response
from xdsi.db import read_snapshot, single_read
from xdsi.validate import errors as e
from xdsi.validate.errors import XDSError

log = logging.getLogger(__name__)


def run_stored_query(conn: Connection, request: etree._Element, *, max_results: int = 10000) -> bytes:
    """Answer one ``query:AdhocQueryRequest`` (ITI TF-2a 3.18).

    Parameters
    ----------
    conn
        Connection to the registry database (read only).
    request
        The ``query:AdhocQueryRequest`` element.
    max_results
        More matching objects than this is an XDSTooManyResults failure.

    Returns
    -------
    bytes
        The serialized ``query:AdhocQueryResponse`` (no XML declaration). Bad input never raises: it is
        answered with a Failure carrying RegistryErrors whose message names the parameter.
    """
    leaf = False
    try:
        req = read_request(request)
        leaf = req.return_type == LEAF_CLASS
        spec = specs.SPECS.get(req.query_id)
        if spec is None:
            raise XDSError.of(e.XDSUnknownStoredQuery, "unknown stored query id %s" % req.query_id, req.query_id)
        params = check(spec, req)
        level = metadata_level(params)
        requested = params.flat(specs.ASSOCIATION_STATUS) or params.flat(specs.ASSOCIATION_STATUS_ALT)
        statuses = filters.association_statuses(level, requested)
        # The SELECTs run on the DBAPI connection under ``conn`` (see registry/storedquery/sql.py for why). One
        # SELECT needs no transaction; several share one snapshot of the registry.
        single = req.query_id in SINGLE_SELECT
        with (single_read if single else read_snapshot)(conn) as db:
            rows = QUERIES[req.query_id](Ctx(db, conn.dialect.name, params, leaf, level, max_results, statuses))
        if not single:  # merge the SELECTs' rows into one pk-ordered list
            rows = sorted({r.id: r for r in rows}.values(), key=lambda r: r.pk)
        if len(rows) > max_results:
            raise too_many(max_results)
        if leaf:
            _single_patient(rows)
    except XDSError as exc:
        return adhoc_query_response(leaf_class=leaf, errors=exc.errors)
    except conn.dialect.loaded_dbapi.Error:
        log.exception("stored query failed in the database")
        return adhoc_query_response(errors=[e.RegistryError(e.XDSRegistryError, "registry database error")])
    except Exception:  # a defect here must still give the consumer an answer, not a 500
        log.exception("stored query failed")
        return adhoc_query_response(errors=[e.RegistryError(e.XDSRegistryError, "internal registry error")])
    return adhoc_query_response(rows, leaf_class=leaf)


def _single_patient(rows: list) -> None:
    """Full metadata (LeafClass) is only returned for one patient (ITI TF-2a 3.18.4.1.2.3.3):
    XDSResultNotSinglePatient otherwise. Associations carry no patient."""
    patients = {r[PATIENT] for r in rows if r[KIND] != s.ASSOCIATION and r[PATIENT]}
    if len(patients) > 1:
        raise XDSError.of(
            e.XDSResultNotSinglePatient,
            # The ids are not named: they could belong to patients the requester did not ask about.
            "LeafClass results would span %d patients; ask for ObjectRef or narrow the query" % len(patients),
        )
