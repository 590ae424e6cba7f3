"""The XDS Document Repository actor: ITI-41 / RAD-68 Provide and Register Document Set-b and ITI-43
Retrieve Document Set, served as its own SOAP 1.2 service (:mod:`repository.app`)."""
