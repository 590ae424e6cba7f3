"""The ``xdsi`` command: one sub-command per actor, plus the demo affinity domain and the conformance runner."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

CONFIG_ENV = "XDSI_REGISTRY_CONFIG"
#: Sub-commands that run servers: they get the malloc settings of :mod:`xdsi.malloc`.
SERVER_COMMANDS = frozenset({"registry", "repository", "imaging-source", "demo"})


def _add_registry(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("registry", help="run the Document Registry (ITI-42, ITI-18, ITI-8)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--db", default="sqlite:///xdsi-registry.db", help="SQLAlchemy URL (sqlite:///..., postgresql://...)")
    p.add_argument("--mllp-port", type=int, default=None, help="ITI-8 MLLP port (default: no feed listener)")
    p.add_argument("--mllp-host", default=None, help="ITI-8 MLLP bind address (default: --host)")
    p.add_argument("--codes", default=None, help="affinity-domain code list (codes.xml); default: codes not checked")
    p.add_argument("--domain-oid", default=None, help="assigning authority OID of affinity-domain patient ids")
    p.add_argument("--max-results", type=int, default=10000, help="ITI-18 result limit (XDSTooManyResults)")
    p.add_argument("--workers", type=int, default=1, help="HTTP worker processes")
    p.add_argument("--national-id-oid", action="append", default=[], metavar="OID",
                   help="assigning authority of national person ids, for automatic patient reconciliation "
                        "(repeatable)")
    p.add_argument("--no-reconciliation", action="store_true",
                   help="refuse unknown local patient ids (XDSUnknownPatientId) instead of holding them")
    p.add_argument("--admin-token", default=os.environ.get("XDSI_ADMIN_TOKEN"),
                   help="bearer token of the /reconciliation endpoint (default: $XDSI_ADMIN_TOKEN; none: disabled)")
    p.set_defaults(func=_run_registry)


def _registry_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from registry.app import RegistryConfig

    return RegistryConfig(
        db_url=args.db,
        codes_path=args.codes,
        max_results=args.max_results,
        mllp_host=args.mllp_host or args.host,
        mllp_port=args.mllp_port,
        domain_oid=args.domain_oid,
        reconciliation=not args.no_reconciliation,
        national_id_oids=list(args.national_id_oid),
        admin_token=args.admin_token,
    )


def registry_app_from_env():  # type: ignore[no-untyped-def]
    """uvicorn factory for multi-worker runs: each worker builds the app from the config in the environment."""
    from registry.app import RegistryConfig, create_app
    from xdsi import malloc

    malloc.tune()  # each worker is a new (spawned) process

    return create_app(RegistryConfig(**json.loads(os.environ[CONFIG_ENV])))


def _run_registry(args: argparse.Namespace) -> int:
    import dataclasses

    import uvicorn

    from registry.app import create_app
    from registry.storage.engine import make_engine

    config = _registry_config(args)
    make_engine(config.db_url).dispose()  # migrate once, before any worker starts
    print(f"xdsi registry: SOAP http://{args.host}:{args.port}/registry (WSDL ?wsdl), db {config.db_url}"
          + (f", ITI-8 mllp://{config.mllp_host}:{config.mllp_port}" if config.mllp_port else ""), flush=True)
    if args.workers > 1:
        if config.mllp_port is not None:
            print("note: the ITI-8 listener runs in every worker; use --workers 1 with --mllp-port", file=sys.stderr)
            return 2
        os.environ[CONFIG_ENV] = json.dumps(dataclasses.asdict(config))
        uvicorn.run("xdsi.cli:registry_app_from_env", factory=True, host=args.host, port=args.port,
                    workers=args.workers, log_level="warning", access_log=False)
    else:
        uvicorn.run(create_app(config), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def _add_repository(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("repository", help="run the Document Repository (ITI-41, RAD-68, ITI-43)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--registry", required=True, help="Document Registry SOAP URL (ITI-42 is sent there)")
    p.add_argument("--repository-id", required=True, help="repositoryUniqueId (OID) of this repository")
    p.add_argument("--store", default="xdsi-repository/documents",
                   help="document store: a directory, file:///dir, or s3://bucket/prefix?endpoint_url=...")
    p.add_argument("--db", default="sqlite:///xdsi-repository/ledger.db", help="ledger database (SQLAlchemy URL)")
    p.add_argument("--grace", type=float, default=600, help="seconds before recovery settles leftovers of a crash")
    p.set_defaults(func=_run_repository)


def _run_repository(args: argparse.Namespace) -> int:
    import uvicorn

    from repository.app import RepositoryConfig, create_app
    from repository.store import StoreUnavailable

    config = RepositoryConfig(registry_url=args.registry, repository_unique_id=args.repository_id,
                              store_url=args.store, db_url=args.db, grace_seconds=args.grace)
    try:
        app = create_app(config)
    except StoreUnavailable as exc:
        print(f"xdsi repository: {exc}", file=sys.stderr)
        return 2
    print(f"xdsi repository {config.repository_unique_id}: SOAP http://{args.host}:{args.port}/repository "
          f"(WSDL ?wsdl), store {config.store_url}, registry {config.registry_url}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def _ids_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import dataclasses

    from imaging_source.config import load_config

    config = load_config(args.pacs_config)
    if getattr(args, "repository", None):
        config = dataclasses.replace(config, repository_url=args.repository)
    return config


def _add_imaging_source(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("imaging-source", help="run the Imaging Document Source (RAD-69; publishing watcher)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8082)
    p.add_argument("--pacs", dest="pacs_config", required=True,
                   help="configuration file (TOML): the PACS, patient id mapping, codes; see "
                        "imaging_source/example-config.toml")
    p.add_argument("--repository", default=None, help="Document Repository SOAP URL (overrides the config)")
    p.add_argument("--db", default="sqlite:///xdsi-imaging-source/state.db", help="publication state database")
    p.add_argument("--watch", action="store_true", help="publish studies as they become stable, withdraw removed ones")
    p.add_argument("--poll-interval", type=float, default=60, help="watcher: seconds between PACS polls")
    p.add_argument("--stable-seconds", type=float, default=300, help="watcher: unchanged this long = stable")
    p.set_defaults(func=_run_imaging_source)


def _run_imaging_source(args: argparse.Namespace) -> int:
    import uvicorn

    from imaging_source.app import ImagingSource, create_app

    ids = ImagingSource(_ids_config(args), db_url=args.db)
    print(f"xdsi imaging-source {ids.config.repository_unique_id}: RAD-69 http://{args.host}:{args.port}/imaging-source"
          f" (WSDL ?wsdl), PACS {', '.join(ids.adapters)}, publishing to {ids.config.repository_url}"
          + (" (watching)" if args.watch else ""), flush=True)
    app = create_app(ids, watch=args.watch, poll_interval=args.poll_interval, stable_seconds=args.stable_seconds)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def _add_publish(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("publish", help="publish PACS studies as XDS-I.b manifests (RAD-68)")
    p.add_argument("--config", dest="pacs_config", required=True, help="imaging source configuration file (TOML)")
    p.add_argument("--pacs", required=True, help="name of the PACS in the configuration")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--study", help="Study Instance UID to publish")
    which.add_argument("--since", help="publish every study with StudyDate on or after this date (YYYY-MM-DD)")
    p.add_argument("--until", default=None, help="with --since: last StudyDate (YYYY-MM-DD)")
    p.add_argument("--repository", default=None, help="Document Repository SOAP URL (overrides the config)")
    p.add_argument("--db", default="sqlite:///xdsi-imaging-source/state.db", help="publication state database")
    p.set_defaults(func=_run_publish)


def _run_publish(args: argparse.Namespace) -> int:
    from datetime import date

    from tqdm import tqdm

    from imaging_source.app import ImagingSource

    ids = ImagingSource(_ids_config(args), db_url=args.db)
    if args.pacs not in ids.adapters:
        print(f"unknown PACS {args.pacs!r}; configured: {', '.join(ids.adapters)}", file=sys.stderr)
        return 2
    try:
        if args.study:
            results = [ids.publisher.publish_study(args.pacs, args.study)]
        else:
            since = date.fromisoformat(args.since)
            until = date.fromisoformat(args.until) if args.until else None
            studies = ids.adapters[args.pacs].find_studies(since=since, until=until)
            results = []
            for s in tqdm(studies, desc=f"publishing {args.pacs}", unit="study"):
                results.append(ids.publisher.publish_study(args.pacs, s.study_instance_uid))
    finally:
        ids.close()
    for r in results:
        if not r.ok or args.study:
            print(f"{r.outcome:16} {r.pacs} {r.study_instance_uid} {r.document_unique_id} {r.message}".rstrip())
    failed = [r for r in results if not r.ok]
    print(f"{len(results) - len(failed)} published or current, {len(failed)} failed")
    return 1 if failed else 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run a demo affinity domain on this machine with sample data")
    p.add_argument("--dir", default="xdsi-demo", help="where the demo keeps its database and files")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--mllp-port", type=int, default=2575)
    p.add_argument("--smoke", action="store_true", help="start, run the sample queries, print them and exit")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from xdsi.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xdsi", description="IHE XDS-I.b image sharing actors")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_registry(sub)
    _add_repository(sub)
    _add_imaging_source(sub)
    _add_publish(sub)
    _add_demo(sub)
    from registry.reconcile_cli import add_parser as add_reconcile

    add_reconcile(sub)
    try:
        from conformance.cli import add_parser as add_conformance
    except ImportError:  # pragma: no cover - the conformance package is part of the distribution
        pass
    else:
        add_conformance(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in SERVER_COMMANDS:
        from xdsi import malloc

        malloc.tune()  # before any thread starts
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # per-request and per-migration chatter
        for name in ("alembic", "httpx"):
            logging.getLogger(name).setLevel(logging.WARNING)
    func = getattr(args, "func", None) or getattr(args, "run", None)
    if func is None and args.command == "conformance":
        from conformance.cli import run_command

        func = run_command
    return int(func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
