"""The house rules: what may import what, and what a declaration may say (checked when it is made,
not when a night fails)."""
import ast
import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT
from kd_tasks.config import ConfigError, DistillConfig, UseCase, param_schemas
from kd_tasks.losses import LOSS_TERMS, kd_loss, objective
from kd_tasks.nightly import resolve_use_case
from kd_tasks.tasks import NO_LABEL
from kd_tasks.use_cases import USE_CASES, get_use_case


def import_graph() -> dict[str, set[str]]:
    """module -> the kd_tasks modules it imports (at the top or inside functions; not those imported
    under ``if TYPE_CHECKING:`` for annotations only)."""
    modules = {}
    for path in (ROOT / "kd_tasks").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets = set()
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                       for stmt in block.body for n in ast.walk(stmt)}  # annotations only: not a dependency
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
                candidates = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for c in candidates:
                while c and c not in modules:
                    c = c.rpartition(".")[0]
                if c and c != name and c != "kd_tasks":
                    targets.add(c)
            if any(c.split(".")[0] == "airflow" for c in candidates):
                targets.add("airflow")
        graph[name] = targets
    return graph


def test_no_import_circles_no_airflow_and_few_floors():
    graph = import_graph()
    assert not [m for m, t in graph.items() if "airflow" in t], "kd_tasks never imports Airflow"
    level: dict[str, int] = {}

    def floor(m, path=()):
        assert m not in path, f"import circle: {' -> '.join(path + (m,))}"
        if m not in level:
            level[m] = 1 + max((floor(t, path + (m,)) for t in graph[m]), default=-1)
        return level[m]

    # 9 floors, the filesystem layer (storage.fs) at the bottom and the CLI on top (11 before the restructure)
    assert max(floor(m) for m in graph) <= 8


@pytest.mark.parametrize("room,may_not_import", [
    ("kd_tasks.storage", ("kd_tasks.models", "kd_tasks.stages", "kd_tasks.use_cases", "kd_tasks.loaders",
                          "kd_tasks.config", "kd_tasks.nightly")),
    ("kd_tasks.models", ("kd_tasks.stages", "kd_tasks.use_cases", "kd_tasks.loaders", "kd_tasks.nightly",
                         "kd_tasks.storage.registry", "kd_tasks.storage.runs", "kd_tasks.storage.lake")),
    ("kd_tasks.loaders", ("kd_tasks.models", "kd_tasks.stages", "kd_tasks.use_cases", "kd_tasks.nightly")),
    ("kd_tasks.use_cases", ("kd_tasks.models", "kd_tasks.stages", "kd_tasks.storage", "kd_tasks.loaders")),
    ("kd_tasks.stages", ("kd_tasks.nightly", "kd_tasks.cli", "kd_tasks.use_cases", "kd_tasks.loaders")),
])
def test_readers_sit_below_writers_and_declarations_below_code(room, may_not_import):
    graph = import_graph()
    wrong = {(m, t) for m, targets in graph.items() if m == room or m.startswith(room + ".")
             for t in targets if any(t == f or t.startswith(f + ".") for f in may_not_import)}
    assert not wrong


def test_the_declaration_tables_import_no_torch():
    code = ("import sys, kd_tasks.use_cases, kd_tasks.models, kd_tasks.losses, kd_tasks.tasks, kd_tasks.config; "
            "print(sorted(m for m in ('torch', 'numpy', 'sklearn', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_a_family_that_cannot_produce_the_tasks_outputs_is_refused():
    text = get_use_case("product_category")
    with pytest.raises(ConfigError, match="binary task but its student family 'hashed_ngram_mlp' supports "
                                          r"\['multiclass'\]"):
        text.with_overrides(task="binary", gate={"metric": "auc"})
    with pytest.raises(ConfigError, match="student family 'hf_sequence_classifier' is unknown; choose one of"):
        dataclasses.replace(text, student_family="hf_sequence_classifier")  # a teacher-only family


def test_loss_terms_default_to_the_task_and_are_checked_against_it():
    assert get_use_case("product_category").distill.loss_terms == {"kd": 1.0}
    assert get_use_case("purchase_intent").distill.loss_terms == {"binary_kd": 1.0}
    with pytest.raises(ConfigError, match="known: "):
        DistillConfig(loss_terms={"kd_typo": 1.0})
    with pytest.raises(ConfigError, match="finite numbers > 0"):
        DistillConfig(loss_terms={"kd": -1})
    with pytest.raises(ConfigError, match=r"loss term\(s\) \['kd'\] do not apply to binary tasks"):
        get_use_case("purchase_intent").with_overrides(distill={"loss_terms": {"kd": 1.0}})
    assert set(LOSS_TERMS) >= {"kd", "binary_kd"}


def test_one_weighted_term_is_exactly_the_term_and_weights_add_up():
    gen = torch.Generator().manual_seed(0)
    z_s, z_t = torch.randn(8, 3, generator=gen), torch.randn(8, 3, generator=gen)
    gold = torch.tensor([0, 1, NO_LABEL, 2, NO_LABEL, 0, 1, 2])
    cfg = DistillConfig(temperature=4.0, alpha=0.3)
    alone = kd_loss(z_s, z_t, gold, 4.0, 0.3)
    assert torch.equal(objective({"kd": 1.0}, cfg)(z_s, z_t, gold), alone)  # bit for bit: today's objective
    assert torch.allclose(objective({"kd": 0.25}, cfg)(z_s, z_t, gold), 0.25 * alone)


def test_every_config_param_reaches_the_run_config():
    """A field declared as a Param is a DAG Param with the declaration's default and lands in the run's config."""
    for name, uc in USE_CASES.items():
        schemas = param_schemas(uc)
        assert schemas["student_size"]["enum"] == sorted({"small", "base", "large"})
        for field, schema in schemas.items():
            if field in uc.extract_params:
                continue
            part = next(p for p in ("labelling", "distill", "gate") if field in {f.name for f in dataclasses.fields(
                getattr(uc, p))}) if field not in {f.name for f in dataclasses.fields(UseCase)} else None
            owner = getattr(uc, part) if part else uc
            assert schema["default"] == getattr(owner, field), (name, field)
            if schema["type"] == "number":
                other = schema["default"] * 0.5 or 0.5
            elif schema["type"] == "integer":
                other = schema["default"] + 1
            elif schema["type"] == "boolean":
                other = not schema["default"]
            elif "enum" in schema:
                other = [v for v in schema["enum"] if v != schema["default"]][0]
            else:
                other = "cpu"  # label_device, the one free-form string
            resolved = resolve_use_case(name, {field: other})
            assert getattr(getattr(resolved, part) if part else resolved, field) == other, (name, field)


def test_a_grouping_key_holds_out_whole_groups(kd_home):
    """With a grouping key (a query, say), every row of a group is on the same side of the held-out split."""
    from kd_tasks.stages.window import load_window
    from kd_tasks.storage import lake

    uc = UseCase(name="grouped", extract_sql="product_category/extract_products.sql", id_column="product_id",
                 input_columns=("title",), label_column="category", teacher_sql="product_category/gold_products.sql",
                 group_column="query")
    n, day, version = 600, "2024-01-10", "0123456789ab"
    ids = [f"p{i:04d}" for i in range(n)]
    queries = [f"q{i % 40}" for i in range(n)]
    import pyarrow as pa

    extract = pa.table({"product_id": ids, "title": [f"title {i}" for i in range(n)],
                        "category": ["a" if i % 2 else "b" for i in range(n)], "query": queries})
    lake.write_partition(extract, lake.extract_path(uc.name, day), {"use_case": uc.name})
    logits = np.zeros((n, 2), np.float32)
    lake.write_partition(lake.soft_label_table(ids, day, logits), lake.soft_label_path(uc.name, version, day),
                         {"label_names": ["a", "b"]})
    window = load_window(uc, day, version, 1)
    side = {}
    for q, held in zip(window.groups, window.holdout):
        assert side.setdefault(q, held) == held, f"group {q} is split"
    assert 0 < sum(side.values()) < len(side)
    split_by_row = load_window(dataclasses.replace(uc, group_column=""), day, version, 1)
    assert len({(q, h) for q, h in zip(queries, split_by_row.holdout)}) > len(side)  # by row, groups split
