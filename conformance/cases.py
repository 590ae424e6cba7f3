"""Conformance cases: load ``index.tsv`` + ``sequence.tsv`` of every transaction folder and build the run order.

Layout (see the conformance-data README): ``<data>/<folder>/index.tsv`` (one row per case, with its expected
outcome), ``<data>/<folder>/sequence.tsv`` (mode, group, step, requires) and ``<data>/patients.tsv``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

#: Stored Query fixture groups: every other group may query what they registered, so they run first.
FIXTURE_GROUPS = ("nist12346", "nist12374")

_CONTENTS_MARK = "expected contents:"


@dataclass
class Case:
    """One request message and its expected outcome."""

    file: Path
    transaction: str
    expected_status: str
    expected_error_codes: list[str]
    what_it_tests: str
    mode: str = "live"
    group: str = ""
    step: int = 1
    requires: list[str] = field(default_factory=list)
    expected_contents: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """``<folder>/<file>``: how ``requires`` entries name this case."""
        return f"{self.file.parent.name}/{self.file.name}"


def requirement_key(path: str) -> str:
    """Normalise a ``requires`` entry (``messages/iti42/x.xml``, ``shared:messages/iti42/x.xml``) to a case key."""
    parts = path.split(":", 1)[-1].strip("/").split("/")
    return "/".join(parts[-2:])


def parse_expected_contents(what_it_tests: str) -> list[str]:
    """The toolkit's ``expected contents:`` words at the end of ``what_it_tests``, e.g. ``["Documents count=2"]``."""
    _, mark, tail = what_it_tests.rpartition(_CONTENTS_MARK)
    if not mark:
        return []
    return [word.strip() for word in tail.split(";") if word.strip()]


def _read_tsv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def load_folder(folder: Path) -> list[Case]:
    """Cases of one transaction folder, in ``index.tsv`` order."""
    sequence = {row["file"]: row for row in _read_tsv(folder / "sequence.tsv")}
    cases = []
    for row in _read_tsv(folder / "index.tsv"):
        seq = sequence.get(row["file"], {})
        what = row.get("what_it_tests") or ""
        cases.append(Case(
            file=folder / row["file"],
            transaction=row["transaction"].strip(),
            expected_status=row["expected_status"].strip(),
            expected_error_codes=[c.strip() for c in (row.get("expected_error_codes") or "").split(",") if c.strip()],
            what_it_tests=what,
            mode=(seq.get("mode") or "live").strip(),
            # A case without a sequence row is a group of its own.
            group=(seq.get("group") or "").strip() or Path(row["file"]).stem,
            step=int(seq.get("step") or 1),
            requires=(seq.get("requires") or "").split(),
            expected_contents=parse_expected_contents(what),
        ))
    return cases


def load_cases(data_dir: Path) -> list[Case]:
    """All cases below ``data_dir`` (a ``messages/`` folder), folders in name order."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"conformance data folder not found: {data_dir}")
    return [case for folder in sorted(p for p in data_dir.iterdir() if (p / "index.tsv").is_file())
            for case in load_folder(folder)]


def run_order(cases: list[Case]) -> list[Case]:
    """Fixture groups first, then every group in ``step`` order; a group some case ``requires`` runs before it.

    Groups keep the order in which they first appear; within a group, ties on ``step`` keep load order.
    """
    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.group, []).append(case)
    for members in groups.values():
        members.sort(key=lambda c: c.step)  # stable: ties keep load order
    group_of = {case.key: case.group for case in cases}

    ordered: list[Case] = []
    done: set[str] = set()

    def visit(group: str, path: tuple[str, ...] = ()) -> None:
        if group in done or group in path:  # a cycle cannot be honoured; step order still holds inside a group
            return
        for case in groups[group]:
            for req in case.requires:
                dep = group_of.get(requirement_key(req))
                if dep and dep != group:
                    visit(dep, path + (group,))
        done.add(group)
        ordered.extend(groups[group])

    for group in [g for g in FIXTURE_GROUPS if g in groups] + list(groups):
        visit(group)
    return ordered


#: Transactions that only add content: they do not observe the effect of earlier steps of their group.
SUBMISSIONS = {"ITI-42", "ITI-41", "RAD-68"}


def static_skips(ordered: list[Case], selected: set[str]) -> dict[str, str]:
    """Skip reasons known before sending anything, by case key.

    * ``validate-only`` samples are never sent;
    * a case of a transaction that is not selected: ``"<T> not selected"``;
    * a case requiring a case of a non-selected transaction, or a *query or retrieve* placed after a step
      of a non-selected transaction in its group: ``"needs <T>"`` (e.g. the queries that check an ITI-57
      update; their ``requires`` names only the original submission). Submissions (ITI-42/41, RAD-68) that
      follow such a step depend on it only through ``requires``: a group's later "submit original" steps run.
    """
    reasons: dict[str, str] = {}
    transaction_of = {c.key: c.transaction for c in ordered}
    blocker: dict[str, tuple[int, str]] = {}  # group -> (step, transaction) of its first non-selected step
    for case in ordered:
        if case.mode != "live":
            reasons[case.key] = case.mode
            continue
        if case.transaction not in selected:
            reasons[case.key] = f"{case.transaction} not selected"
            blocker.setdefault(case.group, (case.step, case.transaction))
            continue
        needed = [transaction_of[k] for k in map(requirement_key, case.requires)
                  if k in transaction_of and transaction_of[k] not in selected]
        if case.group in blocker and case.step > blocker[case.group][0] \
                and case.transaction not in SUBMISSIONS:
            needed.insert(0, blocker[case.group][1])
        if needed:
            reasons[case.key] = f"needs {needed[0]}"
    return reasons
