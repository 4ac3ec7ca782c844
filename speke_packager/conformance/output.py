"""Conformance report output: a terminal table (rich), JSON (``report.to_json()``), JUnit XML."""

from __future__ import annotations

from typing import IO

from lxml import etree

from .model import ConformanceReport, Outcome

__all__ = ["junit_xml", "render_table"]

_STYLE = {Outcome.PASS: "green", Outcome.FAIL: "bold red", Outcome.WARN: "yellow",
          Outcome.NOT_SUPPORTED: "cyan", Outcome.SKIPPED: "dim"}


def render_table(report: ConformanceReport, file: IO[str] | None = None, *,
                 width: int | None = None) -> None:
    """Print the (check, version, result, reason, hint) table and a one-line summary."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, width=width, highlight=False, soft_wrap=False)
    table = Table(title=f"SPEKE conformance of {report.url}", title_justify="left")
    for col in ("check", "version", "result", "reason", "hint"):
        table.add_column(col, overflow="fold")
    for r in report.results:
        result = r.outcome.value + ("" if r.required or r.outcome is Outcome.PASS
                                    else " (optional)")
        table.add_row(r.check, r.version, f"[{_STYLE[r.outcome]}]{result}[/]",
                      _escape(r.reason), _escape(r.hint if r.outcome is not Outcome.PASS
                                                 else ""))
    console.print(table)
    c = report.counts()
    verdict = "[green]PASSED[/]" if report.passed else "[bold red]FAILED[/]"
    console.print(f"{verdict}: {c['pass']} passed, {c['fail']} failed, {c['warn']} warnings, "
                  f"{c['not supported']} not supported, {c['skipped']} skipped "
                  f"in {report.seconds:.1f} s")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def junit_xml(report: ConformanceReport) -> bytes:
    """JUnit XML: one testsuite per SPEKE version, one testcase per check; failures carry the
    reason and hint, "not supported" and skipped checks are ``<skipped>``."""
    root = etree.Element("testsuites", name="speke-conformance", time=f"{report.seconds:.3f}")
    total = failures = skipped = 0
    for version in report.versions:
        results = [r for r in report.results if r.version == version]
        suite = etree.SubElement(root, "testsuite", name=f"SPEKE {version}",
                                 tests=str(len(results)))
        n_fail = n_skip = 0
        for r in results:
            case = etree.SubElement(suite, "testcase", name=r.check,
                                    classname=f"speke.v{version}", time=f"{r.seconds:.3f}")
            if r.outcome is Outcome.FAIL and r.required:
                n_fail += 1
                f = etree.SubElement(case, "failure", message=r.reason, type="conformance")
                f.text = f"{r.reason}\nhint: {r.hint}" if r.hint else r.reason
            elif r.outcome in (Outcome.NOT_SUPPORTED, Outcome.SKIPPED):
                n_skip += 1
                etree.SubElement(case, "skipped", message=f"{r.outcome.value}: {r.reason}")
            elif r.reason:
                etree.SubElement(case, "system-out").text = (
                    f"{r.outcome.value}: {r.reason}" + (f"\nhint: {r.hint}" if r.hint else ""))
        suite.set("failures", str(n_fail))
        suite.set("errors", "0")
        suite.set("skipped", str(n_skip))
        suite.set("time", f"{sum(r.seconds for r in results):.3f}")
        total, failures, skipped = total + len(results), failures + n_fail, skipped + n_skip
    root.set("tests", str(total))
    root.set("failures", str(failures))
    root.set("errors", "0")
    root.set("skipped", str(skipped))
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))
