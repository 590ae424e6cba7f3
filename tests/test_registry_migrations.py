"""Registry migrations that change stored data or access paths, run from the revision before them on a
registry holding rows (SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import Engine, inspect, text

from registry.storage.engine import MIGRATIONS, make_engine
from xdsi.db import upgrade


def _index_sql(engine: Engine, name: str) -> str:
    with engine.connect() as c:
        if engine.dialect.name == "sqlite":
            return c.execute(text("SELECT sql FROM sqlite_master WHERE name = :n"), {"n": name}).scalar_one()
        return c.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": name}).scalar_one()


def test_0006_drops_unqueried_index_entries(db_url: str) -> None:
    """0006: ix_ro_lid goes, source/target indexes keep associations only, and the author attributes no
    stored query reads leave object_value; authorPerson rows stay."""
    engine = make_engine(db_url, migrate=False)
    try:
        upgrade(engine, MIGRATIONS, "0005")
        with engine.begin() as c:
            c.execute(text("INSERT INTO registry_object (id, lid, version, kind, status, patient_id, xml) "
                           "VALUES ('urn:uuid:a', 'urn:uuid:a', 1, 'DE', 'A', 'P^^^&1.2&ISO', '<x/>')"))
            pk = c.execute(text("SELECT pk FROM registry_object WHERE id = 'urn:uuid:a'")).scalar_one()
            for attr in ("authorPerson", "authorInstitution", "authorRole", "authorSpecialty", "eventCode"):
                c.execute(text("INSERT INTO object_value (object_pk, attr, value) VALUES (:pk, :a, 'v')"),
                          {"pk": pk, "a": attr})
        upgrade(engine, MIGRATIONS)

        with engine.connect() as c:
            kept = sorted(r[0] for r in c.execute(text("SELECT attr FROM object_value")))
        assert kept == ["authorPerson", "eventCode"]
        names = {ix["name"] for ix in inspect(engine).get_indexes("registry_object")}
        assert "ix_ro_lid" not in names and {"ux_ro_lid_version", "ix_ro_source", "ix_ro_target"} <= names
        assert "source_object IS NOT NULL" in _index_sql(engine, "ix_ro_source")
        assert "target_object IS NOT NULL" in _index_sql(engine, "ix_ro_target")
    finally:
        engine.dispose()


def test_partial_association_indexes_serve_the_stored_queries(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The association lookups of GetAssociations/GetAll (IN lists, the join on the source) still use
    the partial indexes: SQLite's plan names them."""
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        with engine.connect() as c:
            def plan(sql: str) -> str:
                return " ".join(str(r[-1]) for r in c.execute(text("EXPLAIN QUERY PLAN " + sql)))

            assert "ix_ro_source" in plan("SELECT pk FROM registry_object ro WHERE ro.source_object IN ('a', 'b')")
            assert "ix_ro_target" in plan("SELECT pk FROM registry_object ro WHERE ro.target_object = 'a'")
            joined = plan("SELECT ro.pk FROM registry_object ro JOIN registry_object src "
                          "ON ro.source_object = src.id WHERE src.patient_id = 'p' AND ro.kind = 'AS'")
            assert "ix_ro_source" in joined
    finally:
        engine.dispose()
