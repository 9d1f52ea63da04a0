# Nightly knowledge distillation on Airflow 3.  `make demo` and `make test` are all a new user needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

export KD_HOME ?= $(CURDIR)/var
export KD_DATASETS ?= $(abspath $(CURDIR)/../shared/datasets)
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# What stays on this machine (Airflow's home, logs; the embedded warehouse and the worker cache through
# KD_LOCAL_DIR's default in kd_tasks): KD_HOME itself when it is local, ./var when it is on S3.
LOCAL_DIR := $(or $(KD_LOCAL_DIR),$(if $(filter s3://%,$(KD_HOME)),$(CURDIR)/var,$(KD_HOME)))
export AIRFLOW_HOME ?= $(LOCAL_DIR)/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__PARALLELISM ?= 2

DEMO_DS   ?= 2024-01-10
DEMO_DAYS ?= 10
# The synthetic demo's teacher beats its baselines (the teacher gate); a weak teacher (another catalogue,
# fewer gold rows) holds the night's promotion. DEMO_ACCEPT_WEAK=true accepts it for the demo nights
# (the report then says WEAK TEACHER and WAIVED).
DEMO_ACCEPT_WEAK ?= false
# Share of the gold rows the teacher is validated on (early stopping and the teacher gate): the demo's
# gold is scarce (about 960 rows), and 20% of it (about 190 rows) narrows the gate's interval enough.
DEMO_VALIDATION_SHARE ?= 0.2
# synthetic (generated here, works on any machine) or fashion (the real catalogue under KD_DATASETS)
DEMO_DATA ?= synthetic
FASHION_LABEL ?= subCategory
FASHION_GOLD_FRACTION ?= 0.2
LOGS      := $(LOCAL_DIR)/logs
# a long command's whole output into a log file, its task starts / ends and progress (ETA) on the terminal
FOLLOW    := $(BIN)/python -m kd_tasks.follow --log

.PHONY: install demo demo-fashion demo-catalogue demo-intent test bench-quality bench-search bench-sweep bench-intent bench-scale bench-s3-cas standalone clean-demo

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# The MLflow server and UI in an environment of their own: the full mlflow package pins an older pyarrow
# than the project's; the project itself logs through mlflow-skinny (pyproject.toml).
MLFLOW_VENV := .venv-mlflow
$(MLFLOW_VENV)/.installed:
	$(PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/pip install --quiet --upgrade pip
	$(MLFLOW_VENV)/bin/pip install --quiet 'mlflow==3.17.2' 'psycopg2-binary>=2.9'
	touch $@

install: $(VENV)/.installed $(MLFLOW_VENV)/.installed

# Seed a synthetic catalogue, bootstrap a teacher if none exists, run the nightly DAG for DEMO_DS (no one
# to ask for an approval: approval off),
# print the report. Idempotent for DEMO_DS: a second run compares against the first one's champion.
demo: install
	@mkdir -p $(LOGS)
	@$(BIN)/airflow db migrate > $(LOGS)/airflow-db-migrate.log 2>&1 || (tail -30 $(LOGS)/airflow-db-migrate.log; exit 1)
ifeq ($(DEMO_DATA),fashion)
	@$(BIN)/python -m kd_tasks.cli load-fashion --label $(FASHION_LABEL) --gold-fraction $(FASHION_GOLD_FRACTION) \
		--end-date $(DEMO_DS) --days $(DEMO_DAYS) --replace
else ifeq ($(DEMO_DATA),file)
	@test -n "$(FILE)" -a -n "$(TEXT_COLUMN)" -a -n "$(LABEL_COLUMN)" || \
		(echo "make demo-catalogue needs FILE=, TEXT_COLUMN= and LABEL_COLUMN= (see README, Your own catalogue)"; exit 2)
	@$(BIN)/python -m kd_tasks.cli load-catalogue "$(FILE)" --text-column "$(TEXT_COLUMN)" \
		--label-column "$(LABEL_COLUMN)" $(if $(ID_COLUMN),--id-column "$(ID_COLUMN)") \
		$(if $(DATE_COLUMN),--date-column "$(DATE_COLUMN)") --encoding $(ENCODING) --gold-fraction $(GOLD_FRACTION) \
		--end-date $(DEMO_DS) --days $(DEMO_DAYS) --replace
else
	@$(BIN)/python -m kd_tasks.cli seed-demo --end-date $(DEMO_DS) --days $(DEMO_DAYS)
endif
	@if [ -f "$(KD_HOME)/teachers/product_category/kd_manifest.json" ]; then \
		echo "teacher exists: $(KD_HOME)/teachers/product_category"; \
	else \
		echo "no teacher yet: fine-tuning one from the pretrained MiniLM (log: $(LOGS)/kd_teacher_bootstrap.log)"; \
		$(FOLLOW) $(LOGS)/kd_teacher_bootstrap.log -- \
			$(BIN)/airflow dags test kd_teacher_bootstrap $(DEMO_DS) -c '{"validation_share": $(DEMO_VALIDATION_SHARE)}'; \
	fi
	@echo "running kd_product_category_nightly for $(DEMO_DS) (log: $(LOGS)/kd_product_category_nightly.log)"
	@$(FOLLOW) $(LOGS)/kd_product_category_nightly.log -- $(BIN)/airflow dags test kd_product_category_nightly $(DEMO_DS) \
		-c '{"extract_lookback_days": $(DEMO_DAYS), "accept_weak_teacher": $(DEMO_ACCEPT_WEAK), "approval": "off"}'
	@$(BIN)/python -m kd_tasks.cli report --ds $(DEMO_DS)

# The same demo on the real Fashion Product Images catalogue, in its own KD_HOME (var/fashion):
# its label set differs from the synthetic one, so it gets its own teacher and registry.
demo-fashion:
	$(MAKE) demo DEMO_DATA=fashion KD_HOME=$(CURDIR)/var/fashion

# The same demo on your own catalogue file (CSV, CSV.gz, TSV or Parquet), in var/catalogue:
#   make demo-catalogue FILE=shop.csv TEXT_COLUMN=title LABEL_COLUMN=category [ID_COLUMN=sku] [DATE_COLUMN=listed]
#        [GOLD_FRACTION=0.2] [ENCODING=latin-1] [DEMO_ACCEPT_WEAK=true]
GOLD_FRACTION ?= 1.0
ENCODING ?= utf-8
demo-catalogue:
	$(MAKE) demo DEMO_DATA=file KD_HOME=$(CURDIR)/var/catalogue

# Purchase intent on the real Taobao log (TAOBAO_FILE, default under KD_DATASETS), in var/intent:
# load the events, train the tabular teacher, run kd_purchase_intent_nightly for two nights.
TAOBAO_FILE ?= $(KD_DATASETS)/taobao_userbehavior_sample/UserBehavior_head.csv.gz
INTENT_DAYS ?= 2017-11-30 2017-12-01
# On this sample the tabular teacher ties its boosted-trees baseline (the teacher gate marks it weak):
# the demo nights accept it, and the report says WEAK TEACHER and WAIVED.
INTENT_ACCEPT_WEAK ?= true
demo-intent: install
	@$(MAKE) --no-print-directory _demo-intent KD_HOME=$(CURDIR)/var/intent DEMO_ACCEPT_WEAK=$(INTENT_ACCEPT_WEAK)

_demo-intent:
	@mkdir -p $(LOGS)
	@$(BIN)/airflow db migrate > $(LOGS)/airflow-db-migrate.log 2>&1 || (tail -30 $(LOGS)/airflow-db-migrate.log; exit 1)
	@$(BIN)/python -m kd_tasks.cli load-events --source taobao --file $(TAOBAO_FILE) --replace
	@if [ ! -f "$(KD_HOME)/teachers/purchase_intent/kd_manifest.json" ]; then \
		echo "training the purchase_intent teacher (log: $(LOGS)/kd_teacher_bootstrap.log)"; \
		$(FOLLOW) $(LOGS)/kd_teacher_bootstrap.log -- \
			$(BIN)/airflow dags test kd_teacher_bootstrap $(firstword $(INTENT_DAYS)) -c '{"use_case": "purchase_intent"}' \
			|| exit 1; \
	fi
	@for ds in $(INTENT_DAYS); do \
		echo "running kd_purchase_intent_nightly for $$ds (log: $(LOGS)/kd_purchase_intent_nightly-$$ds.log)"; \
		$(FOLLOW) $(LOGS)/kd_purchase_intent_nightly-$$ds.log -- \
			$(BIN)/airflow dags test kd_purchase_intent_nightly $$ds -c '{"accept_weak_teacher": $(DEMO_ACCEPT_WEAK), "approval": "off"}' \
			|| exit 1; \
	done
	@$(BIN)/python -m kd_tasks.cli report --use-case purchase_intent --ds $(lastword $(INTENT_DAYS))

test: install
	$(BIN)/python -m pytest -q -ra --durations=15

# Does distillation pay on real data? Teacher vs KD student vs no-KD student vs TF-IDF + LR on the
# fashion catalogue and the clothing reviews; writes $(KD_HOME)/bench/quality.json + .md and the README table.
bench-quality: install
	$(BIN)/python -m benchmarks.quality --update-readme

# Search relevance on the Home Depot pairs: cross-encoder teacher, two-tower and pair students with and
# without KD, BM25; full and scarce regimes; writes $(KD_HOME)/bench/search.json and the README table.
bench-search: install
	$(BIN)/python -m benchmarks.search --update-readme $(SEARCH_ARGS)

# Privileged-feature distillation on the real Taobao and Online Retail logs: teacher vs KD student vs
# no-KD student vs popularity on later days; writes $(KD_HOME)/bench/intent.json.
bench-intent: install
	$(BIN)/python -m benchmarks.intent

# Every stage at 10k / 100k / 1M rows on SQLite and PostgreSQL (and purchase-intent extracts over 1-8 days of
# generated and real events): wall time, rows/s, peak RSS, the ratios of the scale targets; writes
# $(KD_HOME)/bench/scale.json and the README table. SCALE_ARGS passes options (e.g. --sizes 10000,100000).
SCALE_ARGS ?=
bench-scale: install
	$(BIN)/python -m benchmarks.scale --update-readme $(SCALE_ARGS)

# Does the S3 server make two simultaneous conditional writes exclusive? (moto here, or ENDPOINT=<url>
# BUCKET=<a test bucket>);
# writes $(LOCAL_DIR)/bench/s3_cas.json.
bench-s3-cas: install
	$(BIN)/python -m benchmarks.s3_cas $(if $(ENDPOINT),--endpoint $(ENDPOINT)) $(if $(BUCKET),--bucket $(BUCKET))

# T x alpha grid on the validation split (reuses the cached teachers); writes $(KD_HOME)/bench/sweep.json.
bench-sweep: install
	$(BIN)/python -m benchmarks.sweep

# Airflow on a laptop: scheduler, dag-processor, api-server and triggerer in one process, LocalExecutor,
# SQLite metadata, low parallelism, no example DAGs, the kd_heavy pool. UI on http://localhost:8080.
standalone: install
	@mkdir -p $(LOGS)
	$(BIN)/airflow db migrate > $(LOGS)/airflow-db-migrate.log 2>&1
	$(BIN)/airflow pools set kd_heavy 1 "teacher inference, training, latency measurement"
	PATH="$(CURDIR)/$(BIN):$$PATH" AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True $(BIN)/airflow standalone

clean-demo:
	rm -rf $(KD_HOME)
