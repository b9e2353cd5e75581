"""The backtest report as one plain HTML page: no script, no external file, every value
escaped; it reads ``report.json``'s structure (:func:`photograde.backtest.build_report`)."""

from __future__ import annotations

from html import escape
from typing import Any

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f2f2f2; }
.verdict { font-size: 1.2em; padding: .6em 1em; border-left: 6px solid #888; background: #f7f7f7; }
.promote { border-color: #2a7; } .keep { border-color: #c83; }
td.diag { background: #eef7ee; font-weight: 600; }
small { color: #666; }
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.1f}%"


def _table(head: list[str], rows: list[list[str]], raw: bool = False) -> str:
    """A table; cells are escaped unless ``raw`` (already HTML)."""
    cell = (lambda c: c) if raw else _e
    h = "".join(f"<th>{_e(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _summary(report: dict[str, Any]) -> str:
    m = report["metrics"]
    rows = [["agreement with final grades", _pct(m["current"]["agreement"]),
             _pct(m["new"]["agreement"])],
            ["agreement, cases decided (not inconclusive)", _pct(m["current"]["agreement_decided"]),
             _pct(m["new"]["agreement_decided"])],
            ["would-be justification requests", _pct(m["current"]["justification_share"]),
             _pct(m["new"]["justification_share"])],
            ["inconclusive", _pct(m["current"]["inconclusive_share"]),
             _pct(m["new"]["inconclusive_share"])]]
    for d in report["decision_changes"]["labels"]:
        rows.append([f"decision {d}", _pct(m["current"]["decision_shares"][d]),
                     _pct(m["new"]["decision_shares"][d])])
    sources = list(dict.fromkeys([*m["current"]["agreement_by_truth_source"],
                                  *m["new"]["agreement_by_truth_source"]]))
    for s in sources:
        c, n = (m[b]["agreement_by_truth_source"].get(s, {}) for b in ("current", "new"))
        rows.append([f"agreement, final grade from {s} (n={c.get('n', n.get('n', 0))})",
                     _pct(c.get("agreement")), _pct(n.get("agreement"))])
    return _table(["", "current", "new"], rows)


def _matrix(labels: list[str], matrix: list[list[int]], corner: str) -> str:
    rows = []
    for i, (label, counts) in enumerate(zip(labels, matrix, strict=True)):
        cells = [f'<td class="diag">{v}</td>' if i == j else f"<td>{v}</td>"
                 for j, v in enumerate(counts)]
        rows.append(f"<tr><td>{_e(label)}</td>{''.join(cells)}</tr>")
    head = "".join(f"<th>{_e(x)}</th>" for x in [corner, *labels])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _breakdown(groups: list[dict[str, Any]], name: str) -> str:
    rows = [[g["group"], str(g["n"]), str(g["with_final_grade"]),
             _pct(g["agreement"]["current"]), _pct(g["agreement"]["new"]),
             _pct(g["justification_share"]["current"]), _pct(g["justification_share"]["new"]),
             str(g["grade_changes"]), str(g["decision_changes"])] for g in groups]
    return _table([name, "evaluations", "with a final grade", "agreement current",
                   "agreement new", "justification current", "justification new",
                   "grade changes", "decision changes"], rows)


def render(report: dict[str, Any]) -> str:
    """The whole page."""
    rec, b, ev = report["recommendation"], report["bundles"], report["evaluations"]
    period = report["period"]
    klass = {"promote": "promote", "keep current": "keep"}.get(rec["verdict"], "")
    bundles = _table(["", "path", "version", "grading", "min_confidence"],
                     [[k, v["path"], v["version"], v["grading"], str(v["min_confidence"])]
                      for k, v in b.items()])
    rep = report["reproduced"]
    grades = report["grades"]
    parts = [
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>Backtest {_e(b['new']['version'])} vs {_e(b['current']['version'])}</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Backtest</h1>",
        f'<p class="verdict {klass}">{_e(rec["line"])}</p>',
        f"<p>Evaluations submitted from {_e(period['since'])} to "
        f"{_e(period['until'] or 'now')}: {ev['replayed']} replayed, "
        f"{ev['with_final_grade']} with a final grade; skipped: "
        f"{_e(', '.join(f'{k} {v}' for k, v in ev['skipped'].items()) or 'none')}. "
        f"Current bundle: {_e(period['against'])}.</p>",
        bundles,
        f"<p><small>Replay check: of the {rep['n']} evaluations graded by the current "
        f"bundle's version, {rep['same_grade']} get the stored grade again.</small></p>",
        "<h2>Summary</h2>", _summary(report),
        "<h2>Decision changes (current → new)</h2>",
        _matrix(report["decision_changes"]["labels"], report["decision_changes"]["matrix"],
                "current \\ new"),
        "<h2>Confusion matrices (final grade × predicted)</h2>",
        "<h3>current</h3>", _matrix(grades, report["metrics"]["current"]["confusion"],
                                    "final \\ predicted"),
        "<h3>new</h3>", _matrix(grades, report["metrics"]["new"]["confusion"],
                                "final \\ predicted"),
        "<h2>Per refurbisher</h2>", _breakdown(report["by_refurbisher"], "refurbisher"),
        "<h2>Per brand and model</h2>", _breakdown(report["by_model"], "device"),
        "<h2>The rule</h2>",
        f"<p>{_e(RULE_TEXT.format(**rec['rule']))}</p>",
        "</body></html>\n",
    ]
    return "\n".join(parts)


RULE_TEXT = (
    "no change when both bundles give the same grade and decision on every evaluation; "
    "keep current when fewer than {min_final_grades} evaluations have a final grade; promote "
    "when agreement does not drop, justification requests and inconclusive cases rise by at "
    "most {max_cost_points} points, and agreement gains at least {min_gain_points} point or "
    "justification requests fall by at least {min_gain_points} point; keep current otherwise. "
    "Agreement favours the current bundle (its validated grades and accepted suggestions are "
    "its own predictions), so the rule is conservative.")
