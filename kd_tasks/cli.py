"""Command line: load warehouses, bootstrap a teacher, print run reports.

    python -m kd_tasks.cli seed-demo            # synthetic catalogue into the embedded warehouse
    python -m kd_tasks.cli load-fashion --label subCategory
    python -m kd_tasks.cli load-catalogue my.csv --text-column title --label-column category
    python -m kd_tasks.cli load-events --source taobao --file UserBehavior.csv.gz
    python -m kd_tasks.cli load-search pairs.csv --query-column search_term --text-column product_title
    python -m kd_tasks.cli bootstrap-teacher --ds 2024-01-10
    python -m kd_tasks.cli accept-teacher --reason "reviewed"   # accept the current weak teacher
    python -m kd_tasks.cli report --ds 2024-01-10
    python -m kd_tasks.cli rollback --version 3f2a9c01b7de --reason "INC-42"
    python -m kd_tasks.cli sweep                # remove leftovers of killed writes under KD_HOME

The warehouse is ``--warehouse`` (a SQLAlchemy URL), else ``$KD_WAREHOUSE``, else ``sqlite:///$KD_HOME/warehouse.db``.
Errors are one line naming the fix; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .home import default_warehouse_uri, kd_home
from .use_cases import USE_CASES, get_use_case

DEFAULT_FASHION = Path(os.environ.get("KD_DATASETS", "../shared/datasets")) / "fashion_product_styles"


def _add_dates(p: argparse.ArgumentParser, rows: str = "rows are spread over --days days ending here (stable per "
               "row id)", days: str = "listing days for undated rows", tables: str = "the products table",
               label: str = "category erase a stored gold label") -> None:
    p.add_argument("--end-date", default="2024-01-10", help=f"undated {rows}")
    p.add_argument("--days", type=int, default=10, help=f"number of {days}")
    p.add_argument("--replace", action="store_true", help=f"empty {tables} before loading")
    p.add_argument("--clear-labels", action="store_true",
                   help=f"let rows with an empty {label} (default: keep it)")


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share from 0 to 1 (e.g. 0.1 keeps 10% of the labels)")
    return value


def _add_gold_fraction(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gold-fraction", type=_share, default=1.0,
                   help="keep the category on this share of rows (stable by id, in 1%% steps); the rest load "
                        "unlabelled and lose a stored label: the scarce-label case from a fully labelled file")


def _add_use_case(p: argparse.ArgumentParser) -> None:
    p.add_argument("--use-case", default="product_category", choices=sorted(USE_CASES))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kd_tasks.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", default=None, help="warehouse URL (sqlite:///..., postgresql://... or mysql+pymysql://...)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("seed-demo", help="load a synthetic catalogue (deterministic for --seed)")
    p.add_argument("--rows", type=int, default=8000)
    p.add_argument("--gold-fraction", type=float, default=0.15, help="share of rows with a human category")
    p.add_argument("--seed", type=int, default=0)
    _add_dates(p)

    p = sub.add_parser("load-catalogue", help="load your own CSV / Parquet catalogue")
    p.add_argument("file")
    p.add_argument("--text-column", required=True, help="column with the product title")
    p.add_argument("--label-column", required=True, help="column with the category (empty = unlabelled)")
    p.add_argument("--id-column", default=None, help="unique id column; default: derived from the title")
    p.add_argument("--date-column", default=None,
                   help="listing date column (ISO YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS); default: spread")
    p.add_argument("--encoding", default="utf-8", help="text encoding of a CSV / TSV file (e.g. latin-1, cp1252)")
    _add_gold_fraction(p)
    _add_dates(p)

    p = sub.add_parser("load-fashion", help="load the Fashion Product Images catalogue")
    p.add_argument("--folder", default=str(DEFAULT_FASHION), help="folder with styles.csv.gz + styles_text.csv.gz")
    p.add_argument("--label", default="subCategory", choices=["masterCategory", "subCategory", "articleType"])
    p.add_argument("--limit", type=int, default=None, help="load only the first N rows")
    _add_gold_fraction(p)
    _add_dates(p)

    p = sub.add_parser("load-events", help="load a behaviour log (purchase_intent) into the events table")
    p.add_argument("--source", required=True, choices=["taobao", "online_retail"],
                   help="taobao: UserBehavior CSV (user,item,category,behavior,unix time); "
                        "online_retail: the UCI Online Retail parquet (purchases become buy events)")
    p.add_argument("--file", required=True)
    p.add_argument("--first-day", default=None, help="load only events on or after this day (YYYY-MM-DD)")
    p.add_argument("--last-day", default=None, help="load only events up to this day")
    p.add_argument("--replace", action="store_true", help="empty the events table first (default: replace "
                                                          "only the days being loaded)")

    p = sub.add_parser("load-search", help="load a search log: (query, product) pairs with optional relevance "
                                           "grades, and their products")
    p.add_argument("file", help="CSV (optionally .gz) or Parquet file, one (query, product) pair per row")
    p.add_argument("--query-column", required=True, help="column with the search query")
    p.add_argument("--text-column", required=True, help="column with the product title")
    p.add_argument("--grade-column", default=None, help="column with the human relevance grade (empty = unjudged)")
    p.add_argument("--grade-range", nargs=2, type=float, default=None, metavar=("LOW", "HIGH"),
                   help="the grade scale (e.g. 1 3); a grade outside it refuses the file")
    p.add_argument("--description-column", default=None, help="column with a product description")
    p.add_argument("--product-id-column", default=None, help="product id column; default: derived from the title")
    p.add_argument("--date-column", default=None,
                   help="date of the search (ISO YYYY-MM-DD); default: a stable night per query")
    p.add_argument("--encoding", default="utf-8", help="text encoding of a CSV file (e.g. latin-1 for Home Depot)")
    _add_dates(p, "queries are spread over --days nights ending here (stable per query)", "nights for undated queries",
               "the search tables", "grade erase a stored grade")

    p = sub.add_parser("bootstrap-teacher", help="train the use case's teacher without Airflow")
    _add_use_case(p)
    p.add_argument("--ds", required=True, help="use gold rows listed up to this date")
    p.add_argument("--base-model", default=None, help="local HF directory; default: packaged MiniLM")
    p.add_argument("--force", action="store_true", help="retrain even if a valid teacher exists")
    p.add_argument("--publish-weak", action="store_true",
                   help="publish the new teacher in place of the existing one even when the teacher gate marks it "
                        "weak")

    p = sub.add_parser("accept-teacher", help="accept the current weak teacher for every night it labels (the "
                                              "reason is shown in each night's report)")
    _add_use_case(p)
    p.add_argument("--reason", required=True, help="why this weak teacher is good enough")

    p = sub.add_parser("make-tiny-base", help="save a tiny random BERT (MiniLM tokenizer) for smoke runs")
    p.add_argument("out_dir")

    p = sub.add_parser("rollback", help="point production at an earlier registered version (logged); works "
                                        "when the alias or the log is damaged")
    _add_use_case(p)
    p.add_argument("--version", required=True, help="a version under registry/<use_case>/versions/ (12 hex digits)")
    p.add_argument("--reason", required=True, help="why; written to the promotion log")

    p = sub.add_parser("export-model", help="export a registered version for serving (default: production): an "
                                            "n-gram student as student.pt2, a two-tower one as its query tower "
                                            "and item vectors; smoke-tested against the registry copy")
    _add_use_case(p)
    p.add_argument("--version", default=None, help="a version under registry/<use_case>/versions/ (12 hex digits)")

    p = sub.add_parser("mlflow-sync", help="bring the MLflow mirror up to the registry: every night's run, every "
                                           "registered version, the production alias (after an MLflow outage, or "
                                           "a rollback)")
    _add_use_case(p)
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $KD_MLFLOW_TRACKING_URI, $MLFLOW_TRACKING_URI, else SQLite "
                        "under the local directory)")

    p = sub.add_parser("promotions", help="print the promotion log (promoted, candidate, rejected, lost_race, rolled_back)")
    _add_use_case(p)
    p.add_argument("--last", type=int, default=20)

    p = sub.add_parser("report", help="print the latest run report for a date")
    _add_use_case(p)
    p.add_argument("--ds", required=True)
    p.add_argument("--json", action="store_true", help="print the JSON instead of the table")

    p = sub.add_parser("sweep", help="remove temporary files and folders of killed writes under KD_HOME")
    p.add_argument("--older-than-hours", type=float, default=24.0,
                   help="also remove other hosts' leftovers older than this (this host's: when their writer is dead)")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except Exception as exc:  # one readable line for a person; --debug for the traceback
        if args.debug:
            raise
        from .warehouse import redact

        message = str(exc).replace(args.warehouse, redact(args.warehouse)) if args.warehouse else str(exc)
        print(f"error: {' '.join(message.split())}  (--debug shows the traceback)", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    uri = args.warehouse or default_warehouse_uri()
    from .loaders import catalogue
    from .warehouse import redact

    shown = redact(uri)

    if args.command == "seed-demo":
        from .loaders.synthetic import generate_catalogue

        rows = generate_catalogue(args.rows, args.days, args.end_date, args.gold_fraction, args.seed)
        n = catalogue.load_products(uri, rows, replace=args.replace, clear_labels=args.clear_labels)
        print(f"loaded {n} synthetic products ({sum(r['category'] is not None for r in rows)} labelled) into "
              f"{shown}; {_table_line(uri)}")
    elif args.command == "load-catalogue":
        n = catalogue.load_catalogue_file(uri, args.file, encoding=args.encoding, text_column=args.text_column,
                                          label_column=args.label_column, id_column=args.id_column,
                                          date_column=args.date_column, end_date=args.end_date,
                                          days=args.days, gold_fraction=args.gold_fraction, replace=args.replace,
                                          clear_labels=args.clear_labels or args.gold_fraction < 1)
        kept = f" (categories kept on {args.gold_fraction:.0%} of them)" if args.gold_fraction < 1 else ""
        print(f"loaded {n} products{kept} from {args.file} into {shown}; {_table_line(uri)}")
    elif args.command == "load-search":
        from .loaders import search

        summary = search.load_search_file(
            uri, args.file, encoding=args.encoding, replace=args.replace, clear_labels=args.clear_labels,
            query_column=args.query_column, text_column=args.text_column, grade_column=args.grade_column,
            description_column=args.description_column, product_id_column=args.product_id_column,
            date_column=args.date_column, grade_range=tuple(args.grade_range) if args.grade_range else None,
            end_date=args.end_date, days=args.days)
        skipped = "; ".join(f"skipped {v['rows']} rows {why} (first: rows {', '.join(map(str, v['first_rows']))})"
                            for why, v in summary["skipped"].items())
        if summary["retitled"]["rows"]:
            skipped += ("; " if skipped else "") + (
                f"{summary['retitled']['rows']} rows name a product with another title than its first row "
                f"(first: rows {', '.join(map(str, summary['retitled']['first_rows']))}): the first title is kept")
        held = search.count_search(uri)
        print(f"loaded {summary['pairs']} pairs ({summary['judged']} judged) of {summary['rows']} rows and "
              f"{summary['products']} products from {args.file} into {shown}" + (f"; {skipped}" if skipped else "")
              + f"; the warehouse now holds {held['pairs']} pairs ({held['judged']} judged) of {held['queries']} "
                f"queries and {held['products']} products")
    elif args.command == "load-fashion":
        records = catalogue.read_fashion_styles(args.folder)[:args.limit]
        rows = catalogue.catalogue_rows(records, source="fashion_product_styles", text_column="productDisplayName",
                                        label_column=args.label, id_column="id", end_date=args.end_date,
                                        days=args.days, gold_fraction=args.gold_fraction)
        n = catalogue.load_products(uri, rows, replace=args.replace,
                                    clear_labels=args.clear_labels or args.gold_fraction < 1)
        print(f"loaded {n} fashion products ({sum(r['category'] is not None for r in rows)} labelled with "
              f"{args.label}) into {shown}; {_table_line(uri)}")
    elif args.command == "load-events":
        from .loaders.events import load_events, read_online_retail, read_taobao, select_days

        rows, dropped = (read_taobao if args.source == "taobao" else read_online_retail)(args.file)
        rows = select_days(rows, args.first_day, args.last_day)
        result = load_events(uri, rows, replace=args.replace)
        print(f"loaded {result['events']} events over {result['days']} days ({result['first_day']}.."
              f"{result['last_day']}) into {shown}; dropped {dropped}")
    elif args.command == "bootstrap-teacher":
        from .nightly import bootstrap

        print(json.dumps(bootstrap(get_use_case(args.use_case), args.ds, uri, args.base_model, args.force,
                                   publish_weak=args.publish_weak)))
    elif args.command == "accept-teacher":
        from .storage.teachers import accept_teacher

        record = accept_teacher(args.use_case, get_use_case(args.use_case).resolved_teacher_dir(), args.reason,
                                kd_home())
        print(f"teacher {record['version']} of {args.use_case} accepted ({record['reason']}); it was weak: "
              f"{record['verdict']}")
    elif args.command == "make-tiny-base":
        from .models.hf_text import create_tiny_base_model

        print(create_tiny_base_model(args.out_dir))
    elif args.command == "rollback":
        from .storage.registry import rollback

        result = rollback(args.use_case, args.version, args.reason)
        print(f"production of {args.use_case} now {result['version']} (was {result['previous']})")
    elif args.command == "export-model":
        from .stages.export import export_production
        from . import names as _names

        version = _names.version(args.version) if args.version else None
        print(json.dumps(export_production(get_use_case(args.use_case), version=version)))
    elif args.command == "mlflow-sync":
        from .nightly import mirror
        from .stages.mirror import ui_command

        out = mirror(get_use_case(args.use_case), uri=args.tracking_uri)
        if not out.get("off"):
            print(f"MLflow {out['uri']}: experiment {out['experiment']}, {len(out['runs'] or {})} night run(s), "
                  f"{len(out['versions'])} version(s) of {out['model']}, production = {out['production'] or '(none)'}")
            print(f"open it: {ui_command(args.tracking_uri)}")
    elif args.command == "promotions":
        from .storage.registry import alias_version, promotion_log

        for e in promotion_log(args.use_case)[-args.last:]:
            print(f"{str(e.get('at'))[:19]}  {e.get('outcome', '?'):<14} {e.get('version')}  ds={e.get('ds')}  "
                  f"prev={e.get('previous')}  {e.get('reason', '')}")
        print(f"production: {alias_version(args.use_case) or '(none)'}")
    elif args.command == "report":
        return _report(args)
    elif args.command == "sweep":
        from .storage.files import sweep

        removed = sweep(kd_home(), stale_after_s=args.older_than_hours * 3600)
        print(f"removed {len(removed)} leftover(s) of killed writes under {kd_home()}")
    return 0


def _table_line(uri: str) -> str:
    from .loaders.catalogue import count_products

    counts = count_products(uri)
    return f"the products table now holds {counts['rows']} rows ({counts['labelled']} with a gold label)"


def _report(args: argparse.Namespace) -> int:
    from .stages.report import format_report
    from .storage.files import IntegrityError, read_json
    from .storage.lake import parse_ds
    from .storage.runs import reports as run_reports

    parse_ds(args.ds)
    reports = []
    for p in run_reports(args.use_case):
        try:
            report = read_json(p, "run report", "rerun the write_report task of that run")
        except IntegrityError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            continue
        if isinstance(report, dict) and report.get("ds") == args.ds:
            reports.append((report, p))
    if not reports:
        print(f"no run report for {args.use_case} ds={args.ds} under {kd_home() / 'runs'}; run the DAG first",
              file=sys.stderr)
        return 1
    report, path = reports[-1]
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    if not args.json:
        from .stages.mirror import OFF, experiment_name, model_name, tracking_uri, ui_command

        page = path.parent / "report.html"
        if page.exists():
            print(f"\nthe night's page, with plots: {page}")
        if tracking_uri().lower() != OFF:
            print(f"\nin MLflow (experiment {experiment_name(args.use_case)}, model {model_name(args.use_case)}): "
                  f"{ui_command()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
