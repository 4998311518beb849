# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch first, pinned: this exact version is a CPU build that lies on this project's machines;
# any other version would download a CUDA build of several GB.
TORCH  := torch==2.13.0
# Debian's chromium, for the browser test (tests/test_web_e2e.py); the test skips when it is missing.
CHROMIUM := /usr/bin/chromium
APT_LOG  := /tmp/voxemo-chromium-apt.log

.PHONY: demo test install install-test chromium clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: $(PY) pyproject.toml
	$(PIP) install --quiet $(TORCH)
	@echo "installing voxemo with the extras every command in the README needs but the microphone: pip install -e '.[cli]'"
	$(PIP) install --quiet -e '.[cli]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test chromium

# Only when chromium is missing and we are root with apt-get; a failed install does not stop the tests
# (the browser test then skips, saying why).
chromium:
	@if [ ! -x $(CHROMIUM) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium with apt-get (running as root) for the browser test, tests/test_web_e2e.py"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  (apt-get update -qq && apt-get install -y -qq chromium) >$(APT_LOG) 2>&1 \
	    || echo "could not install chromium (see $(APT_LOG)): the browser test will be skipped"; \
	elif [ ! -x $(CHROMIUM) ]; then \
	  echo "$(CHROMIUM) is missing (installing it needs root and apt-get): the browser test will be skipped"; \
	fi

demo: install
	$(VENV)/bin/voxemo data info examples
	$(VENV)/bin/voxemo predict examples
	@echo "every command in the README runs now; the microphone (voxemo listen) also needs PortAudio:"
	@echo "  apt-get install libportaudio2 && $(PIP) install -e '.[mic]'"

# The Ray tests (tests/test_ray.py) start a local 2-CPU instance of their own: no dashboard, usage
# statistics off, its folder under pytest's temporary folder and removed afterwards.
# Two pytest workers (pytest-xdist), one per core, each taking whole test files (--dist loadfile: a
# module's fixtures, such as the Ray instance, stay in one process); every test runs one torch thread.
test: install-test
	RAY_USAGE_STATS_ENABLED=0 $(PY) -m pytest -q -n 2 --dist loadfile

clean:
	rm -rf $(VENV) build *.egg-info
