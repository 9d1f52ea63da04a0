"""The MLflow mirror: each night as an MLflow run, each registered version as an MLflow model version,
the ``production`` alias where the project's registry has it.

The project's registry stays the source of truth. MLflow's alias API has no compare-and-swap, so the
mirror never decides anything: it copies what the registry already holds (every registered version
and the alias as it stands after the project's own compare-and-swap) and what the runs' reports say.
Each step is idempotent (a night's run is found by its ``kd_run_key`` tag, a version by its
``kd_version`` tag), so a retried task or ``kd mlflow-sync`` after an outage only adds what is missing.

Where: ``$KD_MLFLOW_TRACKING_URI`` (else ``$MLFLOW_TRACKING_URI``; ``off`` turns the mirror off), by
default a SQLite file under the local directory (``<KD_LOCAL_DIR>/mlflow/mlflow.db``, artifacts
beside it). Experiment ``kd/<use case>``, registered model ``kd_<use case>``.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ..storage import fs, registry
from ..storage.files import local_copy
from ..storage.runs import RunDir, reports
from ..warehouse import redact

if TYPE_CHECKING:
    from ..config import UseCase

log = logging.getLogger(__name__)

ALIAS = registry.ALIAS  # "production", in MLflow too
OFF = "off"
# MLflow's HTTP client retries a refused connection 7 times with backoff (minutes); the mirror task
# has Airflow's retries for an outage, so one request gives up sooner unless the operator says otherwise
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


class MirrorError(RuntimeError):
    """MLflow could not be reached or refused a write; the project's registry is unaffected."""


def tracking_uri(uri: str | None = None) -> str:
    """The tracking (and registry) URI: ``uri``, else ``$KD_MLFLOW_TRACKING_URI``, else
    ``$MLFLOW_TRACKING_URI``, else SQLite under the local directory; ``off`` when the mirror is off."""
    uri = uri or os.environ.get("KD_MLFLOW_TRACKING_URI") or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri.strip()
    return f"sqlite:///{default_dir() / 'mlflow.db'}"


def default_dir() -> Path:
    return fs.local_dir() / "mlflow"


def experiment_name(use_case: str) -> str:
    return f"kd/{use_case}"


def model_name(use_case: str) -> str:
    return f"kd_{use_case}"


def ui_command(uri: str | None = None) -> str:
    """The command that opens the mirror in MLflow's UI (the server lives in its own environment,
    ``.venv-mlflow``: the full ``mlflow`` package pins an older pyarrow than this project uses)."""
    uri = tracking_uri(uri)
    if uri.startswith(("http://", "https://")):
        return f"open {uri}"
    return f".venv-mlflow/bin/mlflow ui --backend-store-uri {redact(uri)} --port 5000"


@contextlib.contextmanager
def _client(uri: str) -> Iterator[Any]:
    """An ``MlflowClient`` on ``uri``, with the fluent API (``log_model``) pointed there too for the block."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    import mlflow
    from mlflow.tracking import MlflowClient

    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    # set_tracking_uri also sets MLFLOW_TRACKING_URI in the environment: put both back as they were
    env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    before = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield MlflowClient(tracking_uri=uri, registry_uri=uri)
    except MirrorError:
        raise
    except Exception as exc:  # MLflow raises MlflowException, requests' and SQLAlchemy's errors
        raise MirrorError(f"MLflow at {redact(uri)} failed: {type(exc).__name__}: {redact(str(exc))[:500]}. "
                          "The promotion stands; the mirror task retries, or run `kd mlflow-sync` once MLflow "
                          "is back") from exc
    finally:
        mlflow.set_tracking_uri(before[0])
        registry_utils._registry_uri = before[1]
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _experiment(client: Any, uri: str, use_case: str) -> str:
    name = experiment_name(use_case)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    # a file-backed store keeps the artifacts beside its database, not in ./mlruns of whatever cwd
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///"):]).parent / "artifacts").resolve().as_uri()
    return client.create_experiment(name, artifact_location=location, tags={"kd_use_case": use_case})


# --------------------------------------------------------------------------- what a night logs

_KEY = re.compile(r"[^A-Za-z0-9_.\-/ ]")


def _key(*parts: Any) -> str:
    return _KEY.sub("_", ".".join(str(p) for p in parts))[:250]


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)) and math.isfinite(v):
        return float(v)
    return None


def night_metrics(report: dict[str, Any], distilled: dict[str, Any] | None = None) -> dict[str, float]:
    """Every number of a night's report as MLflow metrics: each model's metrics (``student.macro_f1``),
    per-class figures (``teacher.per_class_recall.Topwear``), each comparison's interval, each gate
    check's value, threshold and verdict, and the timings."""
    ev, gate = report["evaluation"], report["gate"]
    out: dict[str, float] = {}
    for model, metrics in ev["models"].items():
        for k, v in metrics.items():
            if isinstance(v, dict):
                for sub, x in v.items():
                    if (n := _number(x)) is not None:
                        out[_key(model, k, sub)] = n
            elif (n := _number(v)) is not None:
                out[_key(model, k)] = n
    for name, c in (ev.get("comparisons") or {}).items():
        for k in ("delta", "low", "high", "units"):
            if _number(c.get(k)) is not None:
                out[_key(name, k)] = _number(c[k])
    for c in gate.get("checks", []):
        for k in ("value", "threshold"):
            if _number(c.get(k)) is not None:
                out[_key("gate", c["name"], k)] = _number(c[k])
        out[_key("gate", c["name"], "passed")] = float(bool(c["passed"]))
    out["gate.promote"] = float(gate.get("decision") == "promote")
    for k in ("eval_rows", "eval_groups", "classes"):
        if _number(ev.get(k)) is not None:
            out[k] = _number(ev[k])
    for k in ("train_rows", "gold_rows", "empty_input_rows"):
        if distilled and _number(distilled.get(k)) is not None:
            out[_key("distill", k)] = _number(distilled[k])
    for name, s in ((distilled or {}).get("train_seconds") or {}).items():
        out[_key("timing", f"train_{name}_s")] = float(s)
    return out


def _param(v: Any) -> str:
    return json.dumps(v) if isinstance(v, (dict, list)) else str(v)


def night_params(use_case: UseCase, report: dict[str, Any], distilled: dict[str, Any] | None) -> dict[str, str]:
    ev = report["evaluation"]
    params = {"use_case": use_case.name, "ds": report["ds"], "run_id": report["run_id"],
              "teacher_version": ev.get("teacher_version") or "", "champion_version": ev.get("champion_version") or "",
              "data_window": ",".join(ev.get("window") or []), "metric": ev.get("metric") or "",
              "sql_file": use_case.extract_sql}
    for k, v in ((distilled or {}).get("distill") or {}).items():
        params[_key("distill", k)] = _param(v)
    for k, v in asdict(use_case.gate).items():
        params[_key("gate_config", k)] = _param(v)
    return {k: v[:6000] for k, v in params.items()}


def run_key(use_case: str, ds: str, run_id: str) -> str:
    return hashlib.sha256(json.dumps([use_case, ds, run_id]).encode()).hexdigest()[:32]


def _find_run(client: Any, experiment_id: str, key: str) -> Any:
    found = client.search_runs([experiment_id], filter_string=f"tags.kd_run_key = '{key}'", max_results=5)
    finished = [r for r in found if r.info.status == "FINISHED"]
    for r in found:  # a run a crashed attempt left half-logged is logged again whole
        if r.info.status != "FINISHED":
            client.delete_run(r.info.run_id)
    return finished[0] if finished else None


def _log_night(client: Any, experiment_id: str, use_case: UseCase, report_path: Any, report: dict[str, Any]) -> str:
    """The night of ``report`` (read from ``report_path``) as a finished MLflow run (once); its MLflow run id."""
    from mlflow.entities import Metric, Param

    from .report import format_report

    key = run_key(use_case.name, report["ds"], report["run_id"])
    existing = _find_run(client, experiment_id, key)
    if existing is not None:
        return existing.info.run_id
    run_dir = RunDir(fs.as_path(report_path).parent)
    try:
        distilled = run_dir.read("distill")
    except Exception:  # an old run without its distill fact still mirrors its report
        distilled = None
    ev, gate, outcome = report["evaluation"], report["gate"], report["outcome"]
    verdict = ev.get("teacher_verdict") or {}
    tags = {"kd_run_key": key, "kd_use_case": use_case.name, "kd_ds": report["ds"], "kd_run_id": report["run_id"],
            "kd_kind": "night", "kd_decision": gate.get("decision", ""), "kd_action": gate.get("action", ""),
            "kd_outcome": outcome.get("outcome", ""), "kd_candidate": gate.get("candidate", "student"),
            "kd_teacher_version": ev.get("teacher_version") or "", "kd_weak_teacher": str(bool(verdict.get("weak"))),
            "mlflow.runName": f"{report['ds']} {report['run_id']}"[:250],
            "mlflow.note.content": f"gate: {gate.get('decision')} ({gate.get('reason')}); "
                                   f"outcome: {outcome.get('outcome')}"}
    run = client.create_run(experiment_id, tags=tags)
    rid = run.info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in sorted(night_metrics(report, distilled).items())]
    params = [Param(k, v) for k, v in sorted(night_params(use_case, report, distilled).items())]
    for i in range(0, len(params), 100):  # one log_batch takes at most 100 params, 1,000 metrics
        client.log_batch(rid, params=params[i:i + 100])
    for i in range(0, len(metrics), 1000):
        client.log_batch(rid, metrics=metrics[i:i + 1000])
    client.log_text(rid, json.dumps(report, indent=2), "report.json")
    client.log_text(rid, format_report(report), "report.txt")
    page = fs.as_path(report_path).parent / "report.html"
    if page.exists():
        client.log_text(rid, page.read_text(), "report.html")
    client.set_terminated(rid)
    return rid


# --------------------------------------------------------------------------- versions and the alias


def _outputs(use_case: UseCase, label_names: list[str]) -> list[str]:
    return list(label_names) if use_case.task == "multiclass" else ["score" if use_case.task == "ranking" else "logit"]


def _signature(use_case: UseCase, outputs: list[str]) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from ..models import family

    kind = "double" if family(use_case.student_family).inputs == "matrix" else "string"
    return ModelSignature(inputs=Schema([ColSpec(kind, c) for c in use_case.input_columns]),
                          outputs=Schema([ColSpec("float", n) for n in outputs]))


def _mirrored_versions(client: Any, name: str) -> dict[str, str]:
    """Registry version -> MLflow version number of every version MLflow holds for ``name``."""
    out, token = {}, None
    while True:
        page = client.search_model_versions(f"name = '{name}'", max_results=1000, page_token=token)
        out.update({mv.tags["kd_version"]: mv.version for mv in page if "kd_version" in (mv.tags or {})})
        token = page.token
        if not token:
            return out


def _register_version(client: Any, experiment_id: str, use_case: UseCase, version: str,
                      run_ids: dict[tuple[str, str], str]) -> str:
    """Version ``version`` of the project's registry as an MLflow model version, logged in its night's
    MLflow run where that run exists; the MLflow version number."""
    import mlflow

    import kd_tasks

    from ..models.base import read_config
    from .mlflow_model import StudentModel

    name = model_name(use_case.name)
    manifest = registry.version_manifest(use_case.name, version)
    directory = local_copy(registry.version_dir(use_case.name, version), "model", "roll back to a sound version")
    outputs = _outputs(use_case, list(read_config(directory).get("label_names") or []))
    night = run_ids.get((str(manifest.get("ds")), str(manifest.get("run_id"))))
    gate = manifest.get("gate") or {}
    tags = {"kd_version": version, "kd_use_case": use_case.name, "gate_decision": gate.get("decision", ""),
            "gate_reason": str(gate.get("reason", ""))[:500], "teacher_version": manifest.get("teacher_version", ""),
            "sql_hash": manifest.get("sql_hash", ""), "sql_file": manifest.get("sql_file", ""),
            "data_window": ",".join(manifest.get("data_window") or []), "ds": str(manifest.get("ds", "")),
            "run_id": str(manifest.get("run_id", "")), "model": manifest.get("model", "student"),
            "distilled": str(manifest.get("distilled", True))}
    import torch
    import transformers

    requirements = [f"torch=={torch.__version__}", f"transformers=={transformers.__version__}", "pyarrow", "numpy",
                    "pandas", "safetensors", "scikit-learn", f"mlflow-skinny=={mlflow.__version__}"]
    run_context = (mlflow.start_run(run_id=night) if night else
                   mlflow.start_run(experiment_id=experiment_id, run_name=f"register {version}",
                                    tags={"kd_kind": "registration", "kd_use_case": use_case.name}))
    with run_context:
        info = mlflow.pyfunc.log_model(name="student", python_model=StudentModel(list(use_case.input_columns), outputs),
                                       artifacts={"student": str(directory)}, signature=_signature(use_case, outputs),
                                       code_paths=[str(Path(kd_tasks.__file__).parent)],
                                       pip_requirements=requirements)
    mv = mlflow.register_model(info.model_uri, name, tags=tags)
    log.info("MLflow: %s version %s <- registry version %s", name, mv.version, version)
    return mv.version


def _sync_alias(client: Any, use_case: UseCase, versions: dict[str, str]) -> str | None:
    """Point MLflow's ``production`` alias at the project's production version (or remove it)."""
    name = model_name(use_case.name)
    current = registry.alias_version(use_case.name)
    try:
        mirrored = client.get_model_version_by_alias(name, ALIAS)
    except Exception:
        mirrored = None
    target = versions.get(current) if current else None
    if mirrored is not None and target == mirrored.version:
        return current
    if target is None:
        if mirrored is not None:
            client.delete_registered_model_alias(name, ALIAS)
        return None
    client.set_registered_model_alias(name, ALIAS, target)
    log.info("MLflow: %s@%s -> version %s (registry version %s)", name, ALIAS, target, current)
    return current


def mirror(use_case: UseCase, report_paths: list[Any] | None = None, uri: str | None = None) -> dict[str, Any]:
    """Bring MLflow up to the project: the nights of ``report_paths`` (None: every report of the use
    case) as runs, every registered version as a model version, the production alias. Raises
    ``MirrorError`` when MLflow fails; nothing in the project changes either way."""
    uri = tracking_uri(uri)
    if uri.lower() == OFF:
        log.info("MLflow mirror is off (KD_MLFLOW_TRACKING_URI=off)")
        return {"off": True}
    paths = list(reports(use_case.name)) if report_paths is None else [fs.as_path(p) for p in report_paths]
    with _client(uri) as client:
        experiment_id = _experiment(client, uri, use_case.name)
        run_ids = {}
        for p in paths:
            report = json.loads(p.read_text())
            run_ids[(report["ds"], report["run_id"])] = _log_night(client, experiment_id, use_case, p, report)
        versions = _mirrored_versions(client, model_name(use_case.name))
        known = registry.known_versions(use_case.name)
        logged = list(dict.fromkeys(e["version"] for e in registry.promotion_log(use_case.name) if e.get("version")))
        for v in [v for v in logged if v in known] + [v for v in known if v not in logged]:  # in registration order
            if v not in versions:
                versions[v] = _register_version(client, experiment_id, use_case, v, run_ids)
        production = _sync_alias(client, use_case, versions)
    log.info("MLflow at %s: %d night run(s), %d version(s), %s@%s = %s; open it with: %s", redact(uri), len(run_ids),
             len(versions), model_name(use_case.name), ALIAS, production or "(none)", ui_command(uri))
    return {"uri": redact(uri), "experiment": experiment_name(use_case.name), "runs":
            {f"{ds} {rid}": r for (ds, rid), r in run_ids.items()}, "versions": versions, "production": production,
            "model": model_name(use_case.name)}


def mirror_teacher(use_case: UseCase, result: dict[str, Any], uri: str | None = None) -> dict[str, Any]:
    """A teacher bootstrap as its own MLflow run (once per teacher version trained): the training
    config and data window as params, the validation metric per epoch, the teacher gate's verdict
    (each baseline's metric and the teacher's difference with its interval), published or rejected."""
    from mlflow.entities import Metric, Param

    uri = tracking_uri(uri)
    if uri.lower() == OFF or not result.get("trained"):
        return {"off": uri.lower() == OFF, "trained": bool(result.get("trained"))}
    version = result.get("rejected_version") or result["version"]
    manifest = (json.loads((fs.as_path(result["path"]) / "kd_manifest.json").read_text())
                if result.get("published") else {})
    verdict = result.get("verdict") or {}
    with _client(uri) as client:
        experiment_id = _experiment(client, uri, use_case.name)
        key = run_key(use_case.name, "teacher", version)
        existing = _find_run(client, experiment_id, key)
        if existing is not None:
            return {"run": existing.info.run_id, "version": version}
        tags = {"kd_run_key": key, "kd_kind": "teacher", "kd_use_case": use_case.name, "kd_teacher_version": version,
                "kd_published": str(bool(result.get("published"))), "kd_weak_teacher": str(bool(verdict.get("weak"))),
                "mlflow.runName": f"teacher {version}", "mlflow.note.content": str(verdict.get("reason", ""))}
        run = client.create_run(experiment_id, tags=tags)
        now = int(time.time() * 1000)
        params = {"teacher_version": version, "teacher_family": use_case.teacher_family,
                  **{_key("provenance", k): _param(v) for k, v in (manifest.get("provenance") or {}).items()},
                  **{_key("train", k): _param(v) for k, v in (manifest.get("train_config") or {}).items()}}
        metrics = [Metric("validation." + str((manifest.get("validation") or {}).get("metric", "metric")), float(v),
                          now, step) for step, v in enumerate((manifest.get("validation") or {}).get("history") or [],
                                                              start=1)]
        if _number(verdict.get("teacher")) is not None:
            metrics.append(Metric("verdict.teacher", float(verdict["teacher"]), now, 0))
        for name, b in (verdict.get("baselines") or {}).items():
            for k, v in b.items():
                if k == "interval" and isinstance(v, list) and len(v) == 2:
                    for side, x in zip(("low", "high"), v):
                        if _number(x) is not None:
                            metrics.append(Metric(_key("verdict", name, side), float(x), now, 0))
                elif _number(v) is not None:
                    metrics.append(Metric(_key("verdict", name, k), float(v), now, 0))
        metrics.append(Metric("verdict.weak", float(bool(verdict.get("weak"))), now, 0))
        client.log_batch(run.info.run_id, metrics=metrics[:1000],
                         params=[Param(k, v[:6000]) for k, v in sorted(params.items())][:100])
        client.log_text(run.info.run_id, json.dumps({"result": result, "manifest": manifest}, indent=2, default=str),
                        "teacher.json")
        client.set_terminated(run.info.run_id)
    log.info("MLflow at %s: teacher %s logged (%s)", redact(uri), version, "published" if result.get("published")
             else "not published")
    return {"run": run.info.run_id, "version": version}
