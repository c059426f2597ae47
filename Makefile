# vigil — the two promised commands are `make demo` and `make test`; both
# install what is missing first (scripts/install-deps.sh).
BUILD      ?= build
FUZZ_BUILD ?= build-fuzz
BUILD_TYPE ?= Release
JOBS       ?= $(shell nproc)

.PHONY: all deps build vigil fuzz-build test unit integration demo bench scenario-table handbook-compare clean help

all: build

help:
	@echo "make demo   install, build and run the demo"
	@echo "make test   install, build and run every test (ctest labels: unit, integration, slow)"
	@echo "make bench  run the benchmarks (bench/README.md)"
	@echo "make scenario-table  regenerate README.md's per-scenario table"
	@echo "make handbook-compare  the handbook's protocol: book baseline vs vigil (docs/training.md)"
	@echo "make build  build everything; make vigil builds the command only"

deps:
	@if [ -z "$$VIGIL_SKIP_DEPS" ]; then scripts/install-deps.sh; fi

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

vigil: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS) --target vigil

# The libFuzzer targets need clang: a separate build tree with only them.
$(FUZZ_BUILD)/build.ninja:
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -G Ninja -DVIGIL_FUZZ=ON \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo

fuzz-build: deps $(FUZZ_BUILD)/build.ninja
	cmake --build $(FUZZ_BUILD) -j $(JOBS)

test: build fuzz-build
	scripts/test.sh $(BUILD)

unit: build
	cd $(BUILD) && ctest -L unit --output-on-failure -j $(JOBS)

integration: build fuzz-build
	cd $(BUILD) && ctest -L integration --output-on-failure -j $(JOBS)

demo: build
	scripts/demo.sh $(BUILD)

bench: build
	scripts/bench.sh $(BUILD)

# Regenerates README.md's per-scenario table from a fresh simulation.
scenario-table: build
	scripts/scenario_table.sh $(BUILD)

# The Fraud Detection Handbook comparison in docs/training.md.
handbook-compare: build
	scripts/handbook_compare.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD)
