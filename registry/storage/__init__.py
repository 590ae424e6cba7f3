"""Registry storage (SQLAlchemy Core; SQLite by default, PostgreSQL in production).

Layout, after dcm4chee-xds2: each registry object is kept once as its ebRIM XML (``xml``), beside the
indexed columns the stored queries filter on; multi-valued attributes (event codes, authors,
referenceIdList, folder codes...) live in the side table ``object_value``. Queries select ids on the
indexes and return the stored XML, so a response costs little more than reading the rows.
"""
