# fogros_dist: `make demo` runs the main job, `make test` passes the tests. Both set up .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A ROS 2 installation at the standard place is sourced for the tests that need ROS 2 itself
# (the one named by $ROS_DISTRO first); without one those tests skip.
ROS_SETUP ?= $(firstword $(wildcard $(if $(ROS_DISTRO),/opt/ros/$(ROS_DISTRO)/setup.bash) \
	/opt/ros/kilted/setup.bash /opt/ros/jazzy/setup.bash /opt/ros/humble/setup.bash))
WITH_ROS := $(if $(ROS_SETUP),source $(ROS_SETUP) &&,)
# Debian packages the tests use: network namespaces and tc (iproute2), OpenSSH servers and rsync
# for the SSH hosts, cloud-init's schema validator and shellcheck for cloud_images/; and, without
# their recommended packages (wireguard-tools recommends a whole kernel), WireGuard (userspace
# wireguard-go where the kernel has no module) and nftables for a training fleet's mesh, and
# iptables, the host firewall where a machine has no nft.
SYSTEM_PACKAGES := iproute2 procps openssh-server openssh-client rsync cloud-init shellcheck
LEAN_PACKAGES := wireguard-tools wireguard-go nftables iptables

.PHONY: all venv system-deps demo test lint typecheck pytest bench clean

all: test

venv: $(STAMP)

$(STAMP): requirements.txt requirements-build.txt requirements-dev.txt setup.py setup.cfg
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $(STAMP)

system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	lean=$$(for p in $(LEAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing$$lean" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing system packages: $$missing $$lean"; \
		apt-get update -qq; \
		if [ -n "$$missing" ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi; \
		if [ -n "$$lean" ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$lean >/dev/null; fi; \
	else \
		echo "missing system packages: $$missing $$lean (run 'sudo apt-get install $$missing $$lean'; the tests that need them skip)"; \
	fi

demo: venv
	$(BIN)/fogros-dist demo

lint: venv
	$(BIN)/ruff check fogros_dist test bench cloud_images
	$(BIN)/ruff format --check fogros_dist test bench cloud_images

typecheck: venv
	$(BIN)/mypy --strict fogros_dist

# Two workers (PYTEST_WORKERS): most tests wait on links and processes, not on the CPU, and
# every fixture claims its namespaces, subnets and DDS domains by file lock. The 25 slowest
# tests and the reason for each skip are listed at the end: CI must stay well under 30 minutes
# on 2 cores.
PYTEST_WORKERS ?= 2
pytest: venv system-deps
	$(WITH_ROS) $(BIN)/python -m pytest -q -rs -n $(PYTEST_WORKERS) --dist worksteal --durations=25 test

test: lint typecheck pytest

bench: venv
	$(BIN)/python bench/bridge_latency.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
