# minpanel: the two commands are `make run` and `make test` (see README.md).
# Both install what is missing (scripts/setup.sh) and build first.

BUILD_DIR ?= build
JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: all deps build web run test test-slow fuzz fuzz-long bench bench-query clean npm-deps

all: build

deps:
	@bash scripts/setup.sh
	@bash scripts/setup-geoip.sh

$(BUILD_DIR)/build.ninja:
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release -DMINPANEL_WERROR=ON $(CMAKE_FLAGS)

build: deps web $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j$(JOBS)

# The dashboard (web/README.md): its npm packages as the lockfile pins them,
# then web/dist, which the cmake build embeds into the binary.
web/node_modules/.package-lock.json: web/package-lock.json
	@npm ci --prefix web --no-audit --no-fund --loglevel=error

web: deps web/node_modules/.package-lock.json
	@npm run --prefix web --silent build

npm-deps: deps
	@npm ci --prefix tests/npm --no-audit --no-fund --loglevel=error

# Builds Release, creates var/data and the demo project on first start, serves on 127.0.0.1:8080.
run: build
	@bash scripts/run.sh

# The whole suite: unit and integration tests through ctest, then a short fuzz run.
test: build npm-deps
	cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS) -LE slow
	@bash scripts/fuzz.sh 10

# Long-running tests, kept out of `make test`.
test-slow: build npm-deps
	cd $(BUILD_DIR) && ctest --output-on-failure -L slow

fuzz: deps
	@bash scripts/fuzz.sh 10

fuzz-long: deps
	@bash scripts/fuzz.sh 300

bench: build
	@bash bench/ingest.sh

# Query latency against ClickHouse and DuckDB on the same generated events
# (docs/benchmarks.md, "Queries"); not part of `make test`. Pass options
# through BENCH_QUERY_FLAGS, e.g. BENCH_QUERY_FLAGS="--events 10000000".
BENCH_QUERY_FLAGS ?=
# bench/query.sh installs the peers itself (scripts/setup-bench.sh).
bench-query: build
	@bash bench/query.sh $(BENCH_QUERY_FLAGS)

clean:
	rm -rf $(BUILD_DIR) build-fuzz web/dist
