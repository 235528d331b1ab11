# The two set-up commands (README): `make demo` runs the main job, `make test` runs the tests.
# Both create .venv and install into it, torch==2.13.0 first (the CPU build; a plain `torch`
# requirement resolved first would pull several GB of CUDA packages).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install data

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	# a third-party model zoo for the tracing tests (tests/test_trace_thirdparty.py); --no-deps: it
	# declares torchvision (which would pull a CUDA torch), and the models tested never import it
	$(BIN)/pip install -q --no-deps pytorchcv==0.0.74
	touch $@

install: $(BIN)/.installed

# Fashion-MNIST from Debian where apt is available; elsewhere the loader downloads it (checksummed).
data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)) \
		|| echo "note: could not apt-get dataset-fashion-mnist; widthnas will download Fashion-MNIST"; \
	fi

# two single-thread worker processes (the machine's 2 cores); --dist loadfile keeps a file's tests, and the
# module fixtures they share (a finished run), in one process (--dist loadgroup, tests one by one, measured side by
# side on 2026-12-07: 398 s and 652 CPU-s against 361 and 537; a split file pays its imports and fixtures twice)
test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

# a quick profile when no shipped one matches this machine (RESULTS §2.1: 100 networks already predicted 250
# held-out ones all within ±5 %; 1 000 gained 0.5 points of RMS error); ignored when a shipped profile is used
DEMO_PROFILE := --profile-networks 200 --heldout-networks 50 --remeasure-networks 20

demo: install data
	$(BIN)/widthnas run --out runs/demo $(DEMO_PROFILE) $(ARGS)
