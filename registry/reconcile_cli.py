"""``xdsi reconcile``: the operator's side of patient reconciliation (:mod:`registry.reconcile`).

Works on the registry database directly (``--db``) or through a running registry's endpoint
(``--registry-url`` and ``--token``; see :mod:`registry.reconcile_http`)::

    xdsi reconcile list   --db sqlite:///xdsi-registry.db [--state open|linked|rejected|all] [--json]
    xdsi reconcile link   ITEM_OR_LOCAL_ID DOMAIN_PATIENT_ID --by OPERATOR [--note TEXT] (--db URL | --registry-url URL)
    xdsi reconcile reject ITEM --by OPERATOR [--note TEXT] (--db URL | --registry-url URL)
    xdsi reconcile links  (--db URL | --registry-url URL)

Exit status: 0 done, 1 refused (the message says why), 2 the registry or database could not be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any
from urllib.parse import quote

TOKEN_ENV = "XDSI_ADMIN_TOKEN"


class _Refused(Exception):
    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.detail = detail


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``xdsi reconcile`` and its commands."""
    p = sub.add_parser("reconcile", help="patient reconciliation: held submissions, links to domain patients")
    commands = p.add_subparsers(dest="reconcile_command", required=True)

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        c = commands.add_parser(name, help=help_)
        where = c.add_mutually_exclusive_group(required=True)
        where.add_argument("--db", help="registry database (SQLAlchemy URL)")
        where.add_argument("--registry-url", help="running registry (http://host:port, or its /registry URL)")
        c.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                       help=f"admin token of the registry's endpoint (default: ${TOKEN_ENV})")
        c.add_argument("--json", action="store_true", help="print JSON instead of text")
        c.set_defaults(func=run)
        return c

    c = command("list", "list reconciliation items")
    c.add_argument("--state", default="open", choices=["open", "linked", "rejected", "all"])
    c = command("link", "link a held item's local patient id (or a local id) to a domain patient; registers "
                        "what was held and moves what is registered under the local id")
    c.add_argument("target", metavar="ITEM_OR_LOCAL_ID", help="item number, or a local patient id id^^^&oid&ISO")
    c.add_argument("patient_id", metavar="DOMAIN_PATIENT_ID", help="the affinity domain's patient id")
    c.add_argument("--by", required=True, help="who links (recorded)")
    c.add_argument("--note", default=None)
    c = command("reject", "close a held item without registering it (kept for audit)")
    c.add_argument("item", type=int, metavar="ITEM")
    c.add_argument("--by", required=True, help="who rejects (recorded)")
    c.add_argument("--note", default=None)
    command("links", "list local patient id links")


def run(args: argparse.Namespace) -> int:
    try:
        result = _run_db(args) if args.db else _run_http(args)
    except _Refused as exc:
        print(f"xdsi reconcile {args.reconcile_command}: {exc}", file=sys.stderr)
        for e in (exc.detail or {}).get("registry_errors", []) if isinstance(exc.detail, dict) else []:
            print(f"  {e['code']}: {e['message']}", file=sys.stderr)
        return 1
    except ConnectionError as exc:
        print(f"xdsi reconcile {args.reconcile_command}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(_text(args.reconcile_command, result))
    return 0


def _target(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _run_db(args: argparse.Namespace) -> Any:
    from sqlalchemy.exc import OperationalError

    from registry import reconcile
    from registry.storage.engine import make_engine

    try:
        engine = make_engine(args.db)
    except OperationalError as exc:
        raise ConnectionError(f"cannot open the registry database {args.db}: {exc.orig}") from exc
    try:
        cmd = args.reconcile_command
        if cmd == "list":
            return reconcile.list_items(engine, None if args.state == "all" else args.state)
        if cmd == "links":
            return reconcile.list_links(engine)
        if cmd == "link":
            return reconcile.link(engine, _target(args.target), args.patient_id, operator=args.by,
                                  note=args.note).to_json()
        return reconcile.reject(engine, args.item, operator=args.by, note=args.note)
    except reconcile.ReconcileError as exc:
        raise _Refused(exc.message, exc.to_json()) from exc
    finally:
        engine.dispose()


def _run_http(args: argparse.Namespace) -> Any:
    import httpx

    base = args.registry_url.rstrip("/")
    base = base.removesuffix("/registry")
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    cmd = args.reconcile_command
    if cmd == "list":
        method, path, body = "GET", f"/reconciliation?state={args.state}", None
    elif cmd == "links":
        method, path, body = "GET", "/reconciliation/links", None
    elif cmd == "reject":
        method, path, body = "POST", f"/reconciliation/{args.item}/reject", {"operator": args.by, "note": args.note}
    else:
        target = _target(args.target)
        body = {"domain_patient_id": args.patient_id, "operator": args.by, "note": args.note}
        if isinstance(target, int):
            method, path = "POST", f"/reconciliation/{target}/link"
        else:
            method, path = "POST", "/reconciliation/links"
            body["local_patient_id"] = target
    try:
        with httpx.Client(timeout=120, trust_env=False) as client:
            resp = client.request(method, base + quote(path, safe="/?="), json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise ConnectionError(f"cannot reach the registry at {base}: {exc}") from exc
    try:
        data = resp.json()
    except ValueError:
        data = {"error": resp.text.strip() or f"HTTP {resp.status_code}"}
    if resp.status_code >= 400:
        raise _Refused(f"HTTP {resp.status_code}: {data.get('error', data)}", data)
    if cmd == "list":
        return data["items"]
    if cmd == "links":
        return data["links"]
    return data


# --- text output ----------------------------------------------------------------------------------------


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def _text(cmd: str, result: Any) -> str:
    if cmd == "list":
        if not result:
            return "no items"
        rows = []
        for it in result:
            d = it["demographics"]
            resolved = f"{it['resolved_by']} {it['resolved_at']}" if it["resolved_by"] else it["reason"]
            rows.append([str(it["id"]), it["state"], it["received_at"], it["submitted_patient_id"],
                         ",".join(it["national_ids"]) or "-", d.get("name", "-"), d.get("birth_date", "-"),
                         str(len(it["unique_ids"])), it["patient_id"] or "-", resolved])
        return _table(rows, ["ITEM", "STATE", "RECEIVED", "SUBMITTED PATIENT ID", "NATIONAL IDS", "NAME", "BIRTH",
                             "DOCS", "LINKED TO", "REASON / RESOLVED"])
    if cmd == "links":
        if not result:
            return "no links"
        return _table([[r["local_patient_id"], r["patient_id"], r["method"], r["linked_by"], r["linked_at"]]
                       for r in result], ["LOCAL PATIENT ID", "DOMAIN PATIENT ID", "METHOD", "BY", "AT"])
    if cmd == "link":
        if result["already_linked"]:
            return f"{result['local_patient_id']} was already linked to {result['patient_id']}; nothing to do"
        lines = [f"{result['local_patient_id']} linked to {result['patient_id']}",
                 f"  held submissions registered: {', '.join(map(str, result['registered_items'])) or 'none'}",
                 f"  registered entries moved (new versions): {len(result['moved'])}"]
        lines += [f"  not moved: {m}" for m in result["not_moved"]]
        return "\n".join(lines)
    return f"item {result['id']} {result['state']} by {result['resolved_by']} at {result['resolved_at']}"
