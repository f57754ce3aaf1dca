# The two commands of the README. Both set themselves up on a fresh machine.
PYTHON ?= python3
# Real MNIST beside the repository (CI, the team's machines); elsewhere the user cache (`khrbm data fetch mnist`).
ifneq ($(wildcard ../shared/data/mnist),)
KHRBM_DATA_DIR ?= $(abspath ../shared/data)
endif
ifdef KHRBM_DATA_DIR
export KHRBM_DATA_DIR
endif

.PHONY: app test setup setup-test
app: setup                 ## install, then serve the app (on this machine only) and open a browser
	$(PYTHON) -m khrbm serve --show

test: setup-test           ## install (with test and dist extras and Chromium), then run the whole suite
	$(PYTHON) -m pytest

setup:
	$(PYTHON) -m pip install -q -e .
	$(PYTHON) -c "from khrbm.core.kernels import warmup; warmup()"   # compile the Numba kernels once, cached on disk

setup-test:
	$(PYTHON) -m pip install -q -e ".[test,dist]"
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq chromium >/dev/null); \
	  else echo "Chromium is needed for the browser tests: sudo apt-get install chromium"; exit 1; fi; }
