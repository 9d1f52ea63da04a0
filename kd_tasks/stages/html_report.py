"""A night's report as one self-contained HTML page: the gate's decision and reasons at the top, then
the models side by side, each gate check, and plots embedded as PNG images (matplotlib): per-class
recall of teacher / student / champion and the largest confusions (classes), the reliability diagram
(binary), NDCG by query bucket (ranking), agreement with the teacher, latency distributions, and the
gate metric over the last 30 nights from the runs' reports. No file beside it, no network: it opens
from a mail, an artifact store or MLflow as it is.
"""
from __future__ import annotations

import base64
import html
import io
import json
from typing import Any, Sequence

from ..storage import fs
from ..storage.runs import reports
from .report import COLUMNS, approval_text, cell

NIGHTS = 30  # nights in the trend
PAGE_ROUTE = "/kd-reports"  # where the Airflow api-server serves the pages (plugins/kd_reports.py)
COLORS = {"teacher": "#4c72b0", "student": "#dd8452", "baseline": "#8c8c8c", "champion": "#55a868"}


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _figure(width: float = 8.0, height: float = 3.6) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def _img(title: str, data: str, alt: str) -> str:
    return (f'<figure><figcaption>{html.escape(title)}</figcaption>'
            f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>')


def _grouped_bars(models: dict[str, dict[str, Any]], names: Sequence[str], key: str, groups: Sequence[str],
                  ylabel: str, width: float, rotate: bool, ylim: float | None = None) -> str:
    """One bar per model in ``names`` for each of ``groups``, the value ``models[name][key][group]``."""
    fig, ax = _figure(width, 3.8 if rotate else 3.6)
    bar = 0.8 / len(names)
    for i, n in enumerate(names):
        values = models[n][key]
        ax.bar([k + i * bar for k in range(len(groups))], [values.get(g) or 0.0 for g in groups], bar,
               label=n, color=COLORS.get(n))
    ax.set_xticks([k + bar * (len(names) - 1) / 2 for k in range(len(groups))])
    if rotate:
        ax.set_xticklabels(groups, rotation=60, ha="right", fontsize=8)
    else:
        ax.set_xticklabels(groups)
    if ylim is not None:
        ax.set_ylim(0, ylim)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return _png(fig)


def per_class_recall_plot(models: dict[str, dict[str, Any]]) -> str | None:
    names = [n for n in ("teacher", "student", "champion") if models.get(n, {}).get("per_class_recall")]
    if not names:
        return None
    classes = sorted(models[names[0]]["per_class_recall"])
    return _grouped_bars(models, names, "per_class_recall", classes, "recall",
                         max(8.0, 0.28 * len(classes) * len(names)), rotate=True, ylim=1.05)


def confusions_plot(model: dict[str, Any]) -> str | None:
    rows = model.get("confusions") or []
    if not rows:
        return None
    fig, ax = _figure(8.0, 0.35 * len(rows) + 1.0)
    labels = [f"{r['gold']} -> {r['predicted']}" for r in rows][::-1]
    ax.barh(labels, [r["rows"] for r in rows][::-1], color=COLORS["student"])
    for y, r in enumerate(rows[::-1]):
        ax.text(r["rows"], y, f" {r['rows']} ({r['share_of_gold']:.0%} of {r['gold']})", va="center", fontsize=8)
    ax.set_xlabel("held-out rows (gold -> predicted)")
    ax.tick_params(axis="y", labelsize=8)
    return _png(fig)


def reliability_plot(models: dict[str, dict[str, Any]]) -> str | None:
    names = [n for n in ("teacher", "student", "champion") if models.get(n, {}).get("reliability")]
    if not names:
        return None
    fig, ax = _figure(5.0, 4.4)
    ax.plot([0, 1], [0, 1], ":", color="#444", label="perfectly calibrated")
    for n in names:
        bins = models[n]["reliability"]
        ax.plot([b["mean_p"] for b in bins], [b["observed"] for b in bins], "o-", label=f"{n} "
                f"(ECE {models[n].get('ece') or 0:.3f})", color=COLORS.get(n))
    ax.set_xlabel("predicted probability (bin mean)")
    ax.set_ylabel("observed positive rate")
    ax.legend(fontsize=8)
    return _png(fig)


def ndcg_buckets_plot(models: dict[str, dict[str, Any]], metric: str) -> str | None:
    names = [n for n in ("teacher", "student", "baseline", "champion") if models.get(n, {}).get("ndcg_by_candidates")]
    if not names:
        return None
    return _grouped_bars(models, names, "ndcg_by_candidates", list(models[names[0]]["ndcg_by_candidates"]),
                         metric.replace("_", " "), 8.0, rotate=False)


def agreement_plot(models: dict[str, dict[str, Any]]) -> str | None:
    key = next((k for k in ("top1_agreement", "kendall_tau_vs_teacher")
                if any(m.get(k) is not None for n, m in models.items() if n != "teacher")), None)
    if key is None:
        return None
    names = [n for n, m in models.items() if n != "teacher" and m.get(key) is not None]
    fig, ax = _figure(6.0, 2.8)
    ax.bar(names, [models[n][key] for n in names], color=[COLORS.get(n, "#999") for n in names])
    for x, n in enumerate(names):
        ax.text(x, models[n][key], f"{models[n][key]:.3f}", ha="center", va="bottom", fontsize=9)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("top-1 agreement with the teacher" if key == "top1_agreement" else "Kendall tau vs the teacher")
    return _png(fig)


def latency_plot(models: dict[str, dict[str, Any]]) -> str | None:
    names = [n for n, m in models.items() if m.get("samples_ms_b1")]
    if not names:
        return None
    fig, ax = _figure(7.0, 3.2)
    ax.boxplot([models[n]["samples_ms_b1"] for n in names], tick_labels=names, showfliers=True)
    ax.set_yscale("log")
    ax.set_ylabel("ms per call, batch 1 (log scale)")
    return _png(fig)


def history(use_case: str, current: dict[str, Any], nights: int = NIGHTS) -> list[dict[str, Any]]:
    """The last ``nights`` nights of ``use_case`` (the newest run of each ds, the current one included),
    oldest first, from the runs' reports (the promotion log holds neither metrics nor held nights)."""
    by_ds: dict[str, dict[str, Any]] = {}
    for p in reports(use_case):
        try:
            r = json.loads(p.read_text())
        except (OSError, ValueError):
            continue  # a damaged old report is left out of the trend, not fatal to tonight's
        if isinstance(r, dict) and r.get("ds") and r.get("evaluation"):
            by_ds[r["ds"]] = r
    by_ds[current["ds"]] = current
    return [by_ds[d] for d in sorted(by_ds)[-nights:]]


def trend_plot(nights: Sequence[dict[str, Any]], metric: str) -> str | None:
    if not nights:
        return None
    fig, ax = _figure(8.0, 3.2)
    days = [n["ds"] for n in nights]
    for name in ("teacher", "champion"):
        ys = [n["evaluation"]["models"].get(name, {}).get(metric) for n in nights]
        ax.plot(days, [y if y is not None else float("nan") for y in ys], ".-", label=name, color=COLORS[name])
    cand = [n["evaluation"]["models"].get(n["gate"].get("candidate", "student"), {}).get(metric) for n in nights]
    promoted = [n.get("outcome", {}).get("outcome") == "promoted" for n in nights]
    ax.plot(days, [y if y is not None else float("nan") for y in cand], "-", color=COLORS["student"], label="candidate")
    ax.plot([d for d, p in zip(days, promoted) if p], [y for y, p in zip(cand, promoted) if p], "o",
            color="#2a9d2a", label="promoted")
    ax.plot([d for d, p in zip(days, promoted) if not p], [y for y, p in zip(cand, promoted) if not p], "x",
            color="#c0392b", label="not promoted")
    ax.set_ylabel(metric.replace("_", " "))
    ax.tick_params(axis="x", rotation=60, labelsize=8)
    ax.legend(fontsize=8)
    return _png(fig)


CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
.decision{padding:1em;border-radius:6px;margin-bottom:1em}.promote{background:#e3f4e3;border:2px solid #2a9d2a}
.hold{background:#fbe7e5;border:2px solid #c0392b}.warn{background:#fff3cd;border:1px solid #e0b000;padding:.5em}
figure{margin:1em 0}figcaption{font-weight:600;margin-bottom:.3em}img{max-width:100%}
.pass{color:#2a7d2a}.fail{color:#c0392b;font-weight:600}.waived{color:#a07000}"""


def render(report: dict[str, Any], nights: Sequence[dict[str, Any]] | None = None) -> str:
    """The page for ``report`` (a run's report.json), with the trend over ``nights``."""
    ev, gate, outcome = report["evaluation"], report["gate"], report["outcome"]
    models, metric, e = ev["models"], ev["metric"], html.escape
    decision = gate.get("decision", "hold")
    head = [f"<h1>{e(report['use_case'])} &middot; ds={e(report['ds'])}</h1>",
            f"<p>run <code>{e(report['run_id'])}</code> &middot; teacher <code>{e(str(ev.get('teacher_version')))}"
            f"</code> &middot; champion <code>{e(str(ev.get('champion_version') or 'none (first run)'))}</code> "
            f"&middot; {ev.get('eval_rows')} held-out rows &middot; window {e(', '.join(ev.get('window') or []))}</p>",
            f'<div class="decision {"promote" if decision == "promote" else "hold"}" id="decision">'
            f"<h2>Gate decision: {e(decision)}</h2><p>{e(str(gate.get('reason', '')))}</p>"
            f"<p>candidate: {e(str(gate.get('candidate', 'student')))}; action: {e(str(gate.get('action', '')))}"
            f" ({e(str(gate.get('action_reason', '')))}); outcome: <b>{e(str(outcome.get('outcome')))}</b>"
            + (f" version <code>{e(str(outcome.get('version')))}</code>" if outcome.get("version") else "")
            + "</p>"
            + (f"<p>approval asked: {e(str(gate['approval']))}" + (
                f"; answer: {e(approval_text(outcome['approval']))}" if outcome.get("approval") else "") + "</p>"
               if gate.get("approval") else "")
            + "</div>"]
    verdict = ev.get("teacher_verdict") or {}
    if verdict.get("weak"):
        head.append(f'<p class="warn">WEAK TEACHER: {e(str(verdict.get("reason", "")))}</p>')
    if (gate.get("distillation") or {}).get("paid") is False:
        head.append('<p class="warn">Distillation did not pay tonight: the no-KD baseline beats the KD student '
                    "and is the candidate.</p>")
    columns = [c for c in COLUMNS if any(m.get(c[0]) is not None for m in models.values())]
    table = ["<h2>Models</h2><table><tr><th>model</th>" + "".join(f"<th>{e(t)}</th>" for _, t, _ in columns) + "</tr>"]
    for name, m in models.items():
        table.append(f"<tr><td>{e(name)}</td>" + "".join(f'<td class="n">{e(cell(m, k, f))}</td>'
                                                         for k, _, f in columns) + "</tr>")
    table.append("</table>")
    checks = ["<h2>Gate checks</h2><table><tr><th>check</th><th>verdict</th><th>value</th><th>threshold</th>"
              "<th>detail</th></tr>"]
    for c in gate.get("checks", []):
        mark = "waived" if c.get("waived") else "pass" if c["passed"] else "fail"
        checks.append(f'<tr><td>{e(c["name"])}</td><td class="{mark}">{mark.upper()}</td><td class="n">'
                      f'{e(str(c.get("value")))}</td><td class="n">{e(str(c.get("threshold")))}</td>'
                      f'<td>{e(str(c.get("detail", "")))}</td></tr>')
    checks.append("</table>")
    figures = []
    candidate = models.get(gate.get("candidate", "student"), models.get("student", {}))
    for title, data, alt in (
            ("Per-class recall: teacher, student, champion", per_class_recall_plot(models), "per-class recall"),
            ("Largest confusions of the candidate", confusions_plot(candidate), "confusions"),
            ("Calibration (reliability diagram)", reliability_plot(models), "reliability diagram"),
            (f"{metric} by query bucket (judged candidates per query)", ndcg_buckets_plot(models, metric),
             "NDCG by query bucket"),
            ("Agreement with the teacher", agreement_plot(models), "agreement with the teacher"),
            ("Latency per call at batch 1", latency_plot(models), "latency distributions"),
            (f"{metric} over the last {NIGHTS} nights", trend_plot(list(nights or [report]), metric), "trend")):
        if data:
            figures.append(_img(title, data, alt))
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(report['use_case'])} {e(report['ds'])}: {e(decision)}</title><style>{CSS}</style></head><body>"
            + "".join(head) + "".join(table) + "".join(checks) + "<h2>Plots</h2>" + "".join(figures)
            + "</body></html>")


def write_html(use_case: str, report: dict[str, Any], path: Any) -> Any:
    """Render ``report`` with its use case's last nights and write it to ``path`` (atomically)."""
    from ..storage import files

    page = render(report, history(use_case, report))
    return files.write_bytes(fs.as_path(path), page.encode("utf-8"))


def read_page(report_path: str, home: Any = None) -> str:
    """The page beside ``report_path`` (a night's ``report.json``, as ``write_report`` returned it), for a
    server that got the path from elsewhere (the Airflow plugin's "Night report" link): only a
    ``report.json`` inside ``KD_HOME``'s ``runs/`` is read. ``FileNotFoundError`` when the page is missing."""
    from ..names import InputError

    path = fs.as_path(report_path)
    runs = fs.as_path(home or fs.kd_home()) / "runs"
    inside = str(path).startswith(str(runs).rstrip("/") + "/") and ".." not in str(path).split("/")
    if path.name != "report.json" or not inside:
        raise InputError(f"{report_path!r} is not a night's report.json under {runs}")
    page = path.parent / "report.html"
    if not page.is_file():
        raise FileNotFoundError(f"{page} is missing: clear the run's write_report task to write it again")
    return page.read_text()
