"""ebRIM 3.0 <-> domain model (:mod:`xdsi.metadata.model`).

What lives where
----------------
``ebrim_read``
    :func:`read_submission` turns an ``lcm:SubmitObjectsRequest`` (ITI-42, ITI-57, or the one inside an
    ITI-41/RAD-68 ``ProvideAndRegisterDocumentSetRequest``) into a ``Submission`` plus structural
    RegistryErrors; :func:`read_registry_object` re-reads one stored ebRIM object. The reader reports only
    what the model cannot hold (repeated slots, several values in a single-valued slot, two classCodes,
    unclassifiable RegistryPackages, unknown objectType, Classifications aimed at another object).
``ebrim_write``
    :func:`write_submission` and ``write_document_entry`` / ``write_submission_set`` / ``write_folder`` /
    ``write_association`` build schema-valid ebRIM 3.0 (used by the imaging source for KOS metadata, the
    benchmark loader and the tests). ``read(write(x)) == x`` except for ``source``.

Judging the values (required attributes, HL7 formats, cross-object rules, codes of the affinity domain)
is :mod:`xdsi.validate`'s job: ``validate.hl7`` (one check per data type), ``validate.objects`` (per
object, ITI TF-3 4.2.3) and ``validate.submission`` (whole ITI-42 message). A Registry runs::

    sub, errors = read_submission(request)
    errors += validate_register(sub, codes=code_list)

and gets every fault once.
"""

from xdsi.transform.ebrim_read import read_registry_object, read_submission
from xdsi.transform.ebrim_write import (
    write_association,
    write_document_entry,
    write_folder,
    write_registry_object,
    write_submission,
    write_submission_set,
)

__all__ = [
    "read_submission",
    "read_registry_object",
    "write_submission",
    "write_document_entry",
    "write_submission_set",
    "write_folder",
    "write_association",
    "write_registry_object",
]
