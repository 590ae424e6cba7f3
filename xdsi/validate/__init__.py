"""Validation of XDS metadata and requests, each finding mapped to an XDS error code (ITI TF-3 4.2.4).

One validator per HL7 data type (:mod:`.hl7`), one per metadata object (:mod:`.objects`), one per request
type (:mod:`.submission`, :mod:`.query`). Validators return lists of :class:`~.errors.RegistryError`;
they never raise for bad input.
"""
