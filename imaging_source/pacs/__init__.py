"""PACS adapters behind one interface (:class:`~imaging_source.pacs.base.PacsAdapter`): DIMSE
(C-FIND/C-MOVE/C-GET, :mod:`.dimse`) and DICOMweb (QIDO-RS/WADO-RS, :mod:`.dicomweb`)."""
