"""XDS domain model (ITI TF-3 4.2.3): what a DocumentEntry, SubmissionSet, Folder and Association *are*,
independent of ebRIM. :mod:`xdsi.transform` maps it to and from the wire."""
