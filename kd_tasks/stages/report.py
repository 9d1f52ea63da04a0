"""A run report as a short text table: models side by side, every gate check, the decision."""
from __future__ import annotations

from typing import Any

COLUMNS = (("accuracy", "accuracy", "{:.4f}"), ("macro_f1", "macro-F1", "{:.4f}"), ("auc", "AUC", "{:.4f}"),
           ("pr_auc", "PR-AUC", "{:.4f}"), ("logloss", "logloss", "{:.4f}"), ("ece", "ECE", "{:.4f}"),
           ("ndcg_at_10", "NDCG@10", "{:.4f}"), ("mrr", "MRR", "{:.4f}"), ("spearman", "Spearman", "{:.4f}"),
           ("kendall_tau_vs_teacher", "tau vs teacher", "{:.3f}"),
           ("top1_agreement", "agree", "{:.3f}"), ("params", "params", "{:,}"), ("bytes", "bytes", "{:,}"),
           ("p50_ms_b1", "p50 b1 ms", "{:.3f}"), ("p50_ms_b64", "p50 b64 ms", "{:.2f}"))


def cell(model: dict[str, Any], key: str, fmt: str) -> str:
    value = model.get(key)
    return "-" if value is None else fmt.format(value)


def format_report(report: dict[str, Any]) -> str:
    ev, gate, outcome = report["evaluation"], report["gate"], report["outcome"]
    lines = [f"use case {report['use_case']}  ds={report['ds']}  run={report['run_id']}",
             f"held-out gold rows: {ev['eval_rows']}  window: {', '.join(ev['window'])}",
             f"teacher {ev['teacher_version']}  champion {ev.get('champion_version') or '(none: first run)'}"]
    verdict = ev.get("teacher_verdict")
    if verdict and verdict.get("weak"):
        lines.append(f"WEAK TEACHER: {verdict.get('reason', 'marked weak by its teacher gate')}")
    sl = report.get("soft_labels")
    if sl:
        lines.append(f"soft labels: partitions labelled by this teacher now: {', '.join(sl['labelled']) or 'none'}; "
                     f"reused: {', '.join(sl['reused']) or 'none'}")
        if sl.get("healed"):
            lines.append(f"relabelled because their partitions failed verification: {', '.join(sl['healed'])}")
    lines.append("")
    columns = [c for c in COLUMNS if any(m.get(c[0]) is not None for m in ev["models"].values())]
    header = ["model"] + [title for _, title, _ in columns]
    rows = [[name] + [cell(m, key, fmt) for key, _, fmt in columns] for name, m in ev["models"].items()]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    for r in [header] + rows:
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    m = ev["models"]
    if m["student"].get("params") and m["teacher"].get("params"):
        ratio = f"params ratio teacher/student: {m['teacher']['params'] / m['student']['params']:.1f}x"
        if m["student"].get("p50_ms_b1"):
            ratio += f"  p50 b1 latency ratio: {m['teacher']['p50_ms_b1'] / m['student']['p50_ms_b1']:.1f}x"
        lines += ["", ratio]
    for name, c in (ev.get("comparisons") or {}).items():
        if c.get("low") is not None:
            lines.append(f"{name.replace('_vs_', ' - ')} {c['metric']}: {c['delta']:+.4f}, "
                         f"{round(c['confidence'] * 100)}% interval [{c['low']:+.4f}, {c['high']:+.4f}] "
                         f"({c['resamples']} paired resamples of {c['units']} {c['unit']})")
    distillation = gate.get("distillation") or {}
    if distillation.get("paid") is False:
        lines.append("DISTILLATION DID NOT PAY TONIGHT: the no-KD baseline beats the KD student and is the candidate")
    lines += ["", "gate checks:"]
    for c in gate["checks"]:
        mark = "WAIVED" if c.get("waived") else "PASS" if c["passed"] else "FAIL"
        lines.append(f"  [{mark}] {c['name']:<20} value={c['value']} "
                     f"threshold={c['threshold']}  ({c['detail']})")
    lines += ["", f"gate decision: {gate['decision']} ({gate['reason']}); candidate: {gate.get('candidate', 'student')}"]
    if "action" in gate:
        lines.append(f"action: {gate['action']} ({gate['action_reason']})")
    if gate.get("approval"):
        lines.append(f"approval asked: {gate['approval']}")
    kind = outcome.get("outcome")
    if kind == "promoted":
        lines.append(f"promoted version {outcome['version']} -> {outcome['path']}"
                     + (" (already in production: nothing moved)" if outcome.get("already") else "")
                     + (f"; approved: {approval_text(outcome['approval'])}" if outcome.get("approval") else ""))
    elif kind == "rejected":
        lines.append(f"NOT promoted, {outcome['reason']}; version {outcome['version']} kept at {outcome['path']}; "
                     f"production stays {outcome.get('champion') or '(none)'}")
    elif kind == "candidate":
        lines.append(f"candidate {outcome['version']} kept at {outcome['path']}; "
                     f"production stays {outcome.get('champion') or '(none)'}")
    elif kind == "lost_race":
        lines.append(f"NOT promoted, lost a race: {outcome['reason']}")
    else:
        lines.append(f"held; production stays {outcome.get('champion') or '(none)'}")
    return "\n".join(lines)

def approval_text(approval: dict[str, Any]) -> str:
    """One line for a person's answer to an approval request (``chosen``, ``by``, ``at``, ``timed_out``,
    ``timeout``): who chose what, and when."""
    if approval.get("timed_out"):
        return f"no answer within {approval.get('timeout') or 'the timeout'}: {approval['chosen']} (the default)"
    return f"{approval['chosen']} by {approval.get('by') or 'an unnamed user'} at {approval.get('at')}"
