# Entry points. Each target is a thin wrapper over a script in scripts/ so the
# same steps run on a laptop, in CI (.ci/run) and in the docs.
.PHONY: demo test crds manifests controlplane helm lint

## Run the operator on a local control plane with examples/ applied.
demo:
	bash scripts/demo.sh

## Run the whole test suite (unit tests and integration tests on a real control plane).
test:
	bash scripts/test.sh

## Regenerate crds/ from the Rust types (and the chart's copy, with deploy/).
crds:
	cargo run --quiet -- crds --out-dir crds
	bash scripts/manifests.sh

## Regenerate deploy/ (and the chart's copy of crds/) from charts/workspace-operator.
manifests:
	bash scripts/manifests.sh

## Build (once, cached) helm, which the chart's tests drive.
helm:
	bash tests/tools/build.sh

## Build (once, cached) etcd, kube-apiserver and kube-controller-manager.
controlplane:
	bash tests/controlplane/build.sh

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

## Run the performance harness (docs/performance.md) on a fresh control plane:
## `make bench N=1000` (N workspaces; BENCH_ARGS passes more options).
.PHONY: bench
N ?= 100
bench:
	bash tests/controlplane/build.sh >/dev/null
	cargo bench --bench perf -- --workspaces $(N) $(BENCH_ARGS)

## The operator's start, idle and memory cost on a cluster already converged:
## `make bench-warm N=10000` (docs/performance.md, "Warm start").
.PHONY: bench-warm
bench-warm:
	bash tests/controlplane/build.sh >/dev/null
	cargo bench --bench perf -- --warm-start --workspaces $(N) $(BENCH_ARGS)
