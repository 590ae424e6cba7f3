"""Results of a run: per-case lines, the totals line and JUnit XML."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from .cases import Case

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"

# Characters XML 1.0 cannot carry (an actor's fault text may contain them).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass
class CaseResult:
    """Outcome of one case (``PASS``/``FAIL``/``SKIP``) with a short reason and optional details."""

    case: Case
    outcome: str
    reason: str = ""
    details: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class RunResult:
    """All case results in run order, plus set-up problems (e.g. patient feed)."""

    results: list[CaseResult] = field(default_factory=list)
    setup_errors: list[str] = field(default_factory=list)
    #: transaction -> number of its cases left out because the transaction was not selected
    not_selected: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str) -> int:
        return sum(r.outcome == outcome for r in self.results)

    @property
    def ok(self) -> bool:
        return not self.count(FAIL) and not self.setup_errors


def case_line(r: CaseResult, *, verbose: bool = False) -> str:
    """``PASS ITI-42 iti42/x.xml  Success`` (+ details on following lines when verbose)."""
    line = f"{r.outcome} {r.case.transaction:<6} {r.case.key}" + (f"  {r.reason}" if r.reason else "")
    if verbose and r.details:
        line += "".join(f"\n      {d}" for d in r.details)
    return line


def totals_line(run: RunResult) -> str:
    """The final line: ``12 passed, 3 failed, 4 skipped``."""
    return f"{run.count(PASS)} passed, {run.count(FAIL)} failed, {run.count(SKIP)} skipped"


def summary_lines(run: RunResult) -> list[str]:
    """Set-up errors, what was left out, and the totals line (last)."""
    lines = [f"SETUP ERROR {e}" for e in run.setup_errors]
    if run.not_selected:
        left_out = ", ".join(f"{t} {n}" for t, n in sorted(run.not_selected.items()))
        lines.append(f"not run (transaction not selected): {left_out}")
    return lines + [totals_line(run)]


def text_report(run: RunResult, *, verbose: bool = False) -> str:
    """Whole report: one line per case, then :func:`summary_lines`; the totals line is always the last line."""
    return "\n".join([case_line(r, verbose=verbose) for r in run.results] + summary_lines(run))


def junit_xml(run: RunResult) -> bytes:
    """JUnit XML: one ``testsuite`` per transaction, one ``testcase`` per case; set-up errors form a ``setup``
    suite so CI shows them."""
    # suite -> [(name, classname, outcome, message, text, seconds)]
    suites: dict[str, list[tuple[str, str, str, str, str, float]]] = {}
    for r in run.results:
        suites.setdefault(r.case.transaction, []).append(
            (r.case.key, f"{r.case.transaction}.{r.case.group}", r.outcome, r.reason,
             "\n".join([r.case.what_it_tests, *r.details]), r.seconds))
    if run.setup_errors:
        suites["setup"] = [("patient-feed", "setup", FAIL, "set-up failed", "\n".join(run.setup_errors), 0.0)]
    root = etree.Element("testsuites", name="xdsi-conformance")
    for suite_name, cases in suites.items():
        suite = etree.SubElement(root, "testsuite", name=suite_name, tests=str(len(cases)),
                                 failures=str(sum(c[2] == FAIL for c in cases)),
                                 skipped=str(sum(c[2] == SKIP for c in cases)), errors="0",
                                 time=f"{sum(c[5] for c in cases):.3f}")
        for name, classname, outcome, message, text, seconds in cases:
            tc = etree.SubElement(suite, "testcase", classname=classname, name=name, time=f"{seconds:.3f}")
            if outcome in (FAIL, SKIP):
                tag = "failure" if outcome == FAIL else "skipped"
                el = etree.SubElement(tc, tag, message=_NOT_XML.sub("?", message))
                el.text = _NOT_XML.sub("?", text)
    for attr in ("tests", "failures", "skipped"):
        root.set(attr, str(sum(int(s.get(attr)) for s in root)))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def write_junit(run: RunResult, path: Path) -> None:
    Path(path).write_bytes(junit_xml(run))
