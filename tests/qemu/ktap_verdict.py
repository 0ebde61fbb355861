#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Judge the VM test run's KTAP with the kernel tree's own KTAP parser.

Usage: ktap_verdict.py KERNEL-TREE LOG REPORT

LOG is the test VM's console output (tests/out/vm-test.log). The KTAP in it
is parsed by kunit_parser from KERNEL-TREE/tools/testing/kunit, whose full
report goes to REPORT; the failures, the parser's errors and the project's
summary go to standard output, ending with the line

    vm: N passed, N failed

Exits 1 on any failed or crashed test, on any error the parser reports
(such as a wrong test number or a subtest without its result), and when the
plan is missing or does not match the results: a guest that died half way
leaves no plan. Two conventions of the guest's output are mapped before the
parser sees it:

- The guest prints its plan last, as TAP allows: the number of tests is only
  known at the end. kunit_parser reads a plan only after the version line,
  so the last top-level plan is moved there.
- The reference driver's known deviations are "not ok ... # TODO why".
  kunit_parser knows no directive but SKIP (KTAP discourages TODO), so they
  reach it as "ok ... # SKIP TODO why" and are counted apart from the skips:
  reported, neither passed nor failed. A plain SKIP counts as passed, as
  kunit.py's own verdict has it.
"""

import io
import re
import sys

VERSION = re.compile(r"^K?TAP version [0-9]+$")
PLAN = re.compile(r"^1\.\.([0-9]+)$")
TOP_RESULT = re.compile(r"^(not )?ok [0-9]+ ")
MAX_ERRORS = 10
TODO = re.compile(r"^(\s*)not ok ([0-9]+) (.*?) # TODO\b ?(.*)$")


def prepare(lines):
    """Returns the log's lines as kunit_parser should see them, and the plan
    (None when the guest printed none)."""
    lines = [line.rstrip("\r\n").rstrip("\r") for line in lines]
    start = next((i for i, line in enumerate(lines) if VERSION.match(line)), None)
    if start is None:
        return lines, None
    plans = [i for i in range(start + 1, len(lines)) if PLAN.match(lines[i])]
    plan = None
    if plans:
        last = plans[-1]
        plan = int(PLAN.match(lines[last]).group(1))
        lines = lines[: start + 1] + [lines[last]] + lines[start + 1 : last] + lines[last + 1 :]
    return [TODO.sub(r"\1ok \2 \3 # SKIP TODO \4", line) for line in lines], plan


def leaves(test):
    """Every test case of a parsed test: the tests without subtests."""
    if not test.subtests:
        yield test
    for sub in test.subtests:
        yield from leaves(sub)


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    kdir, log, report = sys.argv[1:]
    sys.path.insert(0, f"{kdir}/tools/testing/kunit")
    import kunit_parser  # pylint: disable=import-outside-toplevel
    from kunit_printer import Printer  # pylint: disable=import-outside-toplevel

    with open(log, encoding="utf-8", errors="replace") as f:
        lines, plan = prepare(f)
    out = io.StringIO()
    printer = Printer(output=out)
    main_test = kunit_parser.parse_run_tests(lines, printer)
    kunit_parser.print_summary_line(main_test, printer)
    with open(report, "w", encoding="utf-8") as f:
        f.write(out.getvalue())

    S = kunit_parser.TestStatus
    cases = [case for sub in main_test.subtests for case in leaves(sub)]
    todo = [t for t in cases if t.status == S.SKIPPED and t.skip_reason.startswith("TODO")]
    skipped = [t for t in cases if t.status == S.SKIPPED and t not in todo]
    counts = main_test.counts
    passed = counts.passed + len(skipped)
    failed = counts.failed + counts.crashed
    for t in cases:
        if t.status not in (S.SUCCESS, S.SKIPPED):
            print(f"vm: {t.status.name.lower()}: {t.name or '(a subtest without a result line)'}")
    # One slip in the numbering makes every later result an error: the
    # first few say where it started, the report has them all.
    errors = [line for line in out.getvalue().splitlines() if "[ERROR]" in line]
    for line in errors[:MAX_ERRORS]:
        print(f"vm: KTAP parser: {line}")
    if len(errors) > MAX_ERRORS:
        print(f"vm: KTAP parser: {len(errors) - MAX_ERRORS} more errors in {report}")
    # The parser stops at the plan's count: results beyond it are counted
    # here, from the top-level result lines.
    top = sum(1 for line in lines if TOP_RESULT.match(line))
    if plan is None or plan != top:
        shown = "none" if plan is None else plan
        print(f"vm: the guest run did not finish (plan '{shown}', {top} results)")
        failed += 1
    elif counts.errors:
        failed += 1
    if skipped:
        print(f"vm: {len(skipped)} of the passed tests were skipped (KTAP SKIP)")
    if todo:
        print(f"vm: {len(todo)} known deviations of the reference driver (KTAP TODO), not counted")
    print(f"vm: parsed by the kernel's kunit_parser; report in {report}")
    print(f"vm: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
