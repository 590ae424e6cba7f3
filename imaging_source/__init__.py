"""The XDS-I.b Imaging Document Source: KOS manifests for the studies held in each participating PACS,
published to the repository over RAD-68, and RAD-69 Retrieve Imaging Document Set for their images."""
