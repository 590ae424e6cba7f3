"""Command line: ``xdsi conformance ...`` (via :func:`add_parser`) and ``python -m conformance ...``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .report import case_line, summary_lines, text_report, write_junit
from .runner import run
from .wire import ACTIONS

DESCRIPTION = ("Run the IHE XDS.b/XDS-I.b conformance messages against the actors under test and report "
               "PASS/FAIL/SKIP per case; the last line is 'N passed, N failed, N skipped'.")

#: The shared data next to the repository (``<repo>/../shared``), used when --data is not given.
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "conformance-data" / "messages"


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


def _transactions(value: str) -> set[str]:
    names = {t.strip().upper() for t in value.split(",") if t.strip()}
    unknown = names - ACTIONS.keys()
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown transaction(s) {', '.join(sorted(unknown))}; "
                                         f"known: {', '.join(sorted(ACTIONS))}")
    return names


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The runner's options (shared by the ``xdsi conformance`` subcommand and ``python -m conformance``)."""
    p.add_argument("--registry", metavar="URL", help="Document Registry endpoint (ITI-42/18/57/62)")
    p.add_argument("--repository", metavar="URL", help="Document Repository endpoint (ITI-41/43, RAD-68)")
    p.add_argument("--imaging-source", metavar="URL", help="Imaging Document Source endpoint (RAD-69)")
    p.add_argument("--data", metavar="DIR", type=Path, default=DEFAULT_DATA,
                   help="folder laid out like conformance-data/messages (default: %(default)s)")
    p.add_argument("--mllp", metavar="HOST:PORT", type=_host_port, help="Registry ITI-8 (MLLP) listener")
    p.add_argument("--transactions", metavar="LIST", type=_transactions,
                   help="comma-separated transactions to run, e.g. ITI-42,ITI-18 (default: all with a URL)")
    p.add_argument("--junit", metavar="FILE", type=Path, help="write JUnit XML here")
    p.add_argument("--inline", action="store_true", help="send ITI-41/RAD-68 documents inline, not MTOM/XOP")
    p.add_argument("--no-feed", dest="feed", action="store_false",
                   help="do not register patients over ITI-8 (the actor was configured otherwise)")
    p.add_argument("--verbose", "-v", action="store_true", help="print each result as it comes, with details")


def add_parser(subparsers) -> None:
    """Register the ``conformance`` subcommand on an ``argparse`` subparsers object."""
    p = subparsers.add_parser("conformance", help="run the IHE conformance messages against actor URLs",
                              description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Run, print the report (totals on the last line), write JUnit if asked. Exit code 0 if nothing failed."""
    if not (args.registry or args.repository or args.imaging_source):
        print("error: give at least one of --registry, --repository, --imaging-source", file=sys.stderr)
        return 2
    progress = (lambda r: print(case_line(r, verbose=True), flush=True)) if args.verbose else None
    try:
        result = run(args.data, registry=args.registry, repository=args.repository,
                     imaging_source=args.imaging_source, mllp=args.mllp, transactions=args.transactions,
                     inline=args.inline, feed=args.feed, progress=progress)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.junit:
        write_junit(result, args.junit)
    if args.verbose:  # results were streamed already
        print("\n".join(summary_lines(result)))
    else:
        print(text_report(result))
    return 0 if result.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance", description=DESCRIPTION)
    add_arguments(parser)
    return run_command(parser.parse_args(argv))
