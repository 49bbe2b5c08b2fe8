# mcslabel: two commands on a fresh Debian 12 machine (as root):
#   make demo   install everything, then run the main job end to end
#   make test   install everything, then lint, type-check, test, build docs
#   make test-kernel [POLICY_ROOT=DIR]   boot an SELinux kernel (QEMU) and check verify against it
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: setup demo test lint typecheck pytest docs bench bench-compare clean completion man test-kernel

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup lint typecheck pytest docs

lint:
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck:
	$(BIN)/mypy --strict src

pytest:
	$(BIN)/pytest $(PYTEST_ARGS)

docs:
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

# Shell completion and the man page from the argparse definitions (setup.sh installs them).
completion:
	$(PY) -m mcslabel.cli.generate bash > mcslabel.bash
	$(PY) -m mcslabel.cli.generate zsh > _mcslabel

man:
	$(PY) -m mcslabel.cli.generate man > mcslabel.1

# The kernel lane (docs/kernel.md): 5-7 min (1 more the first time: the 1M-file image);
# writes build/kernel-report.json. KERNEL_LANE_MOUNT_RELABEL=10k,1m relabels 1M files too.
test-kernel:  # run.sh runs setup.sh with the lane's packages
	@bash scripts/kernel-lane/run.sh $(POLICY_ROOT)

bench: setup
	$(PY) benchmarks/run_all.py

# Two commits side by side in one run (docs/performance.md): make bench-compare OLD=REV [NEW=REV]
bench-compare: setup
	$(PY) benchmarks/compare_commits.py --old $(OLD) --new $(or $(NEW),.)

clean:
	rm -rf site .pytest_cache .mypy_cache .ruff_cache mcslabel.bash _mcslabel mcslabel.1
