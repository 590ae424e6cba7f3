"""A streamed RAD-69 answer that had to be cut off is remembered in the imaging source's state database: the
study's retrievals are fetched whole first from then on, after a restart too, until a new manifest replaces
the one it was cut off for. (The cut-off itself, against real PACS, is in tests/test_imaging_source.py.)"""

from __future__ import annotations

import types
from pathlib import Path

from imaging_source import state
from imaging_source.app import ImagingSource
from imaging_source.config import parse_config

STUDY = "1.2.826.0.1.3680043.10.543.1"


def _ids(tmp_path: Path) -> ImagingSource:
    config = parse_config({"repository_unique_id": "1.3.6.1.4.1.21367.13.80.2", "source_id": "1.3.6.1.4.1.21367.13.80.1",
                           "repository_url": "http://127.0.0.1:9/repository", "registry_url": "http://127.0.0.1:9/registry",
                           "affinity_domain_oid": "1.3.6.1.4.1.21367.13.20.3000", "institution": "Test",
                           "pacs": [{"name": "hospital-a", "protocol": "dicomweb",
                                     "dicomweb_url": "http://127.0.0.1:9/dicom-web", "default_issuer": "1.2.3",
                                     "patient_id_mapping": {"domain_issuer": True}}]},
                          base_dir=tmp_path)
    pacs = types.SimpleNamespace(name="hospital-a", close=lambda: None)
    return ImagingSource(config, db_url=f"sqlite:///{tmp_path / 'ids.db'}", adapters={"hospital-a": pacs},  # type: ignore[dict-item]
                         spool_dir=str(tmp_path / "spool"))


def _published(entry_uuid: str) -> state.Published:
    return state.Published(STUDY, "hospital-a", entry_uuid, "1.2.3." + entry_uuid[-1], "P^^^&1.2&ISO", "d", 3,
                           state.PUBLISHED, state.now(), tree_digest="t")


def test_a_cut_off_is_remembered_across_restarts_until_a_new_manifest(tmp_path: Path) -> None:
    ids = _ids(tmp_path)
    with ids.engine.begin() as conn:
        state.put(conn, _published("urn:uuid:1"))
    assert ids.locate(STUDY)[1] == "t"  # streamable

    ids.mark_cut_off(STUDY)
    assert ids.locate(STUDY)[1] is None
    ids.close()

    ids = _ids(tmp_path)  # a restart
    try:
        assert ids.locate(STUDY)[1] is None
        with ids.engine.begin() as conn:
            kept = state.get(conn, STUDY)
            assert kept is not None and kept.cut_off_at is not None
            # A publication check that only refreshes the row keeps the mark (imaging_source.publish copies it).
            state.put(conn, state.Published(**{**kept.__dict__, "tree_digest": "t2"}))
        assert ids.locate(STUDY)[1] is None
        with ids.engine.begin() as conn:  # a new manifest (RPLC) for the study: streamable again
            state.put(conn, _published("urn:uuid:2"))
        assert ids.locate(STUDY)[1] == "t"
    finally:
        ids.close()
