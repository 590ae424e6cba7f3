"""Clark names of the ebXML RegRep elements XDS uses, resolved once (lxml compares tags as strings)."""

from xdsi.ebxml.namespaces import LCM, RIM, XDSB, q

T_SUBMIT = q(LCM, "SubmitObjectsRequest")
T_PNR = q(XDSB, "ProvideAndRegisterDocumentSetRequest")
T_LIST = q(RIM, "RegistryObjectList")
T_EO = q(RIM, "ExtrinsicObject")
T_RP = q(RIM, "RegistryPackage")
T_ASSOC = q(RIM, "Association")
T_CLASS = q(RIM, "Classification")
T_EXTID = q(RIM, "ExternalIdentifier")
T_OBJREF = q(RIM, "ObjectRef")
T_SLOT = q(RIM, "Slot")
T_VALUELIST = q(RIM, "ValueList")
T_VALUE = q(RIM, "Value")
T_NAME = q(RIM, "Name")
T_DESC = q(RIM, "Description")
T_LSTRING = q(RIM, "LocalizedString")
T_VERSION = q(RIM, "VersionInfo")
