"""The teacher gate: is a new teacher worth distilling? Before it is published, the teacher is
compared on the validation rows (gold rows it never trained on) with cheap models trained on the same
gold rows (``stages.bootstrap`` trains them): its family's baselines on the same inputs
(``models.FAMILIES[...].baselines``: TF-IDF + LR for text, boosted trees for feature columns,
privileged ones included) and the use case's student family trained on gold alone (serving-time
inputs: the no-KD student of every night).

"Beats" means a higher validation metric (the use case's gate metric) whose paired bootstrap interval
of (teacher - baseline) lies wholly above 0: a tie is not a win. A teacher that beats them all is
strong; otherwise weak, with the baselines it does not beat and their numbers in ``reason``.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

from ..metrics import paired_bootstrap
from ..tasks import get_task

log = logging.getLogger(__name__)
GOLD_ONLY = "student_gold_only"


def verdict(task_name: str, metric: str, label_names: Sequence[str], gold: Sequence[Any],
            logits: Mapping[str, Any], info: Mapping[str, Mapping[str, Any]] | None = None,
            resamples: int = 1000, confidence: float = 0.95, groups: Sequence[Any] | None = None) -> dict[str, Any]:
    """The verdict on the teacher from every model's logits on the same validation rows (``logits``
    has ``teacher`` and one entry per baseline; ``gold``: the rows' gold values; ``groups``: their
    grouping key where the use case has one, the unit of the metric and of the resamples). Returns ``{"weak",
    "reason", "metric", "validation_rows", "teacher", "baselines": {name: {metric, teacher_minus,
    interval, beaten, ...info}}}``."""
    task = get_task(task_name)
    scorers = {}
    for name, z in logits.items():
        scorers[name] = task.scorer(label_names)
        scorers[name].add(gold, z, groups)
    teacher_score = scorers["teacher"].result().get(metric)
    baselines, lost = {}, []
    for name in logits:
        if name == "teacher":
            continue
        c = paired_bootstrap(scorers[name], scorers["teacher"], metric, groups, resamples=resamples,
                             confidence=confidence)
        beats = c["low"] is not None and c["low"] > 0
        score = scorers[name].result().get(metric)
        baselines[name] = {metric: score, "teacher_minus": c["delta"], "interval": [c["low"], c["high"]],
                           "beaten": beats, **(info or {}).get(name, {})}
        interval = ("not measurable" if c["low"] is None else
                    f"difference {c['delta']:+.4f}, interval [{c['low']:+.4f}, {c['high']:+.4f}]")
        log.info("teacher gate: teacher %s %s vs %s %s on %d validation rows: %s -> %s", metric, _f(teacher_score),
                 name, _f(score), len(gold), interval, "beaten" if beats else "NOT beaten")
        if not beats:
            lost.append(f"{name} ({metric} {_f(score)}, teacher {_f(teacher_score)}, {interval})")
    reason = (f"beats {', '.join(baselines)} on {len(gold)} validation rows" if not lost else
              f"does not beat {'; '.join(lost)} on {len(gold)} validation rows")
    return {"weak": bool(lost), "reason": reason, "metric": metric, "validation_rows": len(gold),
            "teacher": teacher_score, "baselines": baselines, "confidence": confidence, "resamples": resamples}


def _f(x: Any) -> str:
    return "n/a" if x is None else f"{x:.4f}"
