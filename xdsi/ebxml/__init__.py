"""Wire form of XDS metadata: ebXML RegRep 3.0 (ebRIM/ebRS) namespaces, element builders and readers.

Nothing here knows XDS business rules; see :mod:`xdsi.metadata` (domain model),
:mod:`xdsi.transform` (ebRIM <-> model) and :mod:`xdsi.validate` (rules -> XDS error codes).
"""
