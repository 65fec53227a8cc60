# Two commands set up a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test deps lint typecheck pytest bench soak e2e e2e-deps wheel image clean

# Debian packages, installed by the targets that need them when missing:
#   golang-go, golang-github-fsnotify-fsnotify-dev: the Go follower/leader of the wire-compatibility tests
#   util-linux: unshare and mount, for the PID 1 and read-only filesystem tests
#   bindfs, fuse3: a real FUSE mount, where inotify is blind to writes made underneath (like NFS)
#   libfuse2: the library fusepy drives, for the stand-in NFS server whose directory goes stale
TEST_DEBS := golang-go golang-github-fsnotify-fsnotify-dev util-linux bindfs fuse3 libfuse2
#   podman, runc: a real container runtime to play the Kubernetes manifests; debootstrap: a base image
#   without a registry; the rest are podman's helpers that --no-install-recommends would leave out
#   caddy: the stand-in sidecar with no Python and no shell (e2e/test_sidecars.py), copied into an image
#   built FROM scratch
E2E_DEBS := podman runc debootstrap uidmap slirp4netns fuse-overlayfs catatonit caddy \
	user-mode-linux kmod uml-utilities nfs-ganesha nfs-ganesha-vfs nfs-common samba cifs-utils iproute2
IMAGE ?= exitdir:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# The seed's local demo: `busy` ticks until `work` signals exit.
demo: $(STAMP)
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" sh examples/local-demo.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks e2e
	$(VENV)/bin/ruff format --check src tests benchmarks e2e

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict
	$(VENV)/bin/mypy --strict e2e

deps:
	sh scripts/install-debs.sh $(TEST_DEBS)

e2e-deps:
	sh scripts/install-debs.sh $(E2E_DEBS)

pytest: $(STAMP) deps
	$(PY) -m pytest $(PYTEST_ARGS)

# Every check: lint, types, then the tests.
test: lint typecheck pytest

# The Kubernetes manifests on a real container runtime (podman kube play), with our image. The Debian base
# image is built once with debootstrap and cached in ~/.cache/exitdir-e2e; podman's state is temporary.
e2e: $(STAMP) e2e-deps
	$(PY) -m pytest e2e -o timeout=900 $(PYTEST_ARGS)

# The wheel, and the image from it (see Containerfile; BASE=... picks another base image).
wheel: $(STAMP)
	rm -rf dist && $(PY) -m pip wheel -q --no-deps -w dist .

image: wheel
	podman build $(if $(BASE),--build-arg BASE=$(BASE)) -t $(IMAGE) .

# The race soak (benchmarks/soak.py): misses and false trips over many randomised trials; must be 0 and 0.
SOAK_TRIALS ?= 10000
soak: $(STAMP)
	$(PY) benchmarks/soak.py --trials $(SOAK_TRIALS)

# BENCH_ARGS='--dir /dev/shm' puts the trial directories on tmpfs (docs/performance.md).
bench: $(STAMP)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist .mypy_cache .pytest_cache .ruff_cache
