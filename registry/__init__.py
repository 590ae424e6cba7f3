"""The XDS Document Registry actor: ITI-42 Register Document Set-b, ITI-18 Registry Stored Query and the
ITI-8 Patient Identity Feed, served as its own SOAP 1.2 service (:mod:`registry.app`)."""
