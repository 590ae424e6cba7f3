"""XDS error codes (ITI TF-3 Table 4.2.4.1-1 and the transaction tables) and the error type every
validator and actor returns."""

from __future__ import annotations

from dataclasses import dataclass

from xdsi.metadata import vocabulary as v

# ITI TF-3 Table 4.2.4.1-1 (the subset the registry, repository and imaging source raise) --------------
XDSRegistryError = "XDSRegistryError"
XDSRegistryMetadataError = "XDSRegistryMetadataError"
XDSRegistryBusy = "XDSRegistryBusy"
XDSRegistryNotAvailable = "XDSRegistryNotAvailable"
XDSRegistryOutOfResources = "XDSRegistryOutOfResources"
XDSRegistryDeprecatedDocumentError = "XDSRegistryDeprecatedDocumentError"
XDSRegistryDuplicateUniqueIdInMessage = "XDSRegistryDuplicateUniqueIdInMessage"
XDSDuplicateUniqueIdInRegistry = "XDSDuplicateUniqueIdInRegistry"
XDSNonIdenticalHash = "XDSNonIdenticalHash"
XDSNonIdenticalSize = "XDSNonIdenticalSize"
XDSPatientIdDoesNotMatch = "XDSPatientIdDoesNotMatch"
XDSUnknownPatientId = "XDSUnknownPatientId"
XDSExtraMetadataNotSaved = "XDSExtraMetadataNotSaved"
XDSRepositoryError = "XDSRepositoryError"
XDSRepositoryMetadataError = "XDSRepositoryMetadataError"
XDSRepositoryBusy = "XDSRepositoryBusy"
XDSRepositoryOutOfResources = "XDSRepositoryOutOfResources"
XDSMissingDocument = "XDSMissingDocument"
XDSMissingDocumentMetadata = "XDSMissingDocumentMetadata"
XDSDocumentUniqueIdError = "XDSDocumentUniqueIdError"
XDSUnknownRepositoryId = "XDSUnknownRepositoryId"
XDSUnknownCommunity = "XDSUnknownCommunity"
XDSStoredQueryParamNumber = "XDSStoredQueryParamNumber"
XDSStoredQueryMissingParam = "XDSStoredQueryMissingParam"
XDSUnknownStoredQuery = "XDSUnknownStoredQuery"
XDSTooManyResults = "XDSTooManyResults"
XDSResultNotSinglePatient = "XDSResultNotSinglePatient"
XDSMetadataVersionError = "XDSMetadataVersionError"
XDSMetadataUpdateError = "XDSMetadataUpdateError"
XDSMetadataUpdateOperationError = "XDSMetadataUpdateOperationError"
XDSMetadataIdentifierError = "XDSMetadataIdentifierError"
XDSMetadataAnnotationError = "XDSMetadataAnnotationError"
XDSPatientIDReconciliationError = "XDSPatientIDReconciliationError"
XDSReplaceFailed = "XDSReplaceFailed"
XDSUnreferencedObjectException = "XDSUnreferencedObjectException"
UnresolvedReferenceException = "UnresolvedReferenceException"
ReferencesExistException = "ReferencesExistException"
InvalidRequestException = "InvalidRequestException"
ObjectNotFoundException = "ObjectNotFoundException"
# XDS-I.b (RAD TF-3 4.69)
XDSUnknownStudyInstanceUID = "XDSUnknownStudyInstanceUID"
XDSUnknownSeriesInstanceUID = "XDSUnknownSeriesInstanceUID"
XDSUnknownSOPInstanceUID = "XDSUnknownSOPInstanceUID"
XDSRetrieveTransferSyntaxNotSupported = "XDSRetrieveTransferSyntaxNotSupported"
XDSIRequestError = "XDSIRequestError"  # malformed RAD-69 request (NIST IDS tests)


@dataclass(frozen=True)
class RegistryError:
    """One ``rs:RegistryError``: code, a message naming the offending object and field, and where."""

    code: str
    message: str
    location: str = ""  # id of the offending object (or request element)
    severity: str = v.SEVERITY_ERROR

    @property
    def is_error(self) -> bool:
        return self.severity == v.SEVERITY_ERROR

    @classmethod
    def warning(cls, code: str, message: str, location: str = "") -> RegistryError:
        return cls(code, message, location, v.SEVERITY_WARNING)


class XDSError(Exception):
    """Raised by actors to abort a transaction with one or more RegistryErrors (never a 500)."""

    def __init__(self, *errors: RegistryError) -> None:
        super().__init__("; ".join(f"{e.code}: {e.message}" for e in errors))
        self.errors = list(errors)

    @classmethod
    def of(cls, code: str, message: str, location: str = "") -> XDSError:
        return cls(RegistryError(code, message, location))
