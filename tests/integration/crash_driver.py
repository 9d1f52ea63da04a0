"""Runs one pipeline stage in a process of its own, for the crash tests: with ``KD_FAULT_POINT`` set,
the stage kills itself (SIGKILL) at that named point. Usage: python crash_driver.py STAGE JSON_ARGS"""
import json
import sys

from kd_tasks import nightly
from kd_tasks.home import default_warehouse_uri

PARAMS = {"extract_lookback_days": 3, "epochs": 2, "accept_weak_teacher": True}  # a tiny, weak teacher


def run(stage: str, args: dict) -> dict:
    uc = nightly.resolve_use_case("product_category", PARAMS)
    ds = args["ds"]
    if stage == "extract":
        return nightly.extract(uc, ds, default_warehouse_uri())
    if stage == "soft_labels":
        return nightly.soft_labels(uc, ds, args.get("run_id", "night"))
    if stage == "promote":
        return nightly.promote(uc, ds, args["distilled"]["run_dir"], args["run_id"])
    if stage == "rollback":
        from kd_tasks.storage import registry

        return registry.rollback(uc.name, args["version"], "crash test")
    if stage == "bootstrap":
        return nightly.bootstrap(uc, ds, default_warehouse_uri(), base_model=args["base_model"], force=args["force"],
                                 train=args["train"], publish_weak=True)  # the swap is under test, not the verdict
    raise SystemExit(f"unknown stage {stage}")


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], json.loads(sys.argv[2])), default=str))
