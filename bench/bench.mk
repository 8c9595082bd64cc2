# HTTP benchmarks (bench/README.md), included by the Makefile: `include bench/bench.mk`.
# Uses $(BIN) and the `venv` target from the Makefile.  BENCH_ARGS passes options through,
# e.g. make bench BENCH_ARGS="--rounds 2 --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench_http"
BENCH_ARGS ?=

.PHONY: bench bench-big bench-profile bench-wrk

bench-wrk:
	command -v wrk || (apt-get update && apt-get install -y wrk)

# Every endpoint against the bare Flask baseline, 3 rounds of 10 s each (about 4 minutes).
bench: venv bench-wrk
	$(BIN)/python bench/run_wrk.py $(BENCH_ARGS)

# The same, then again after storing 1,000,000 provider events (about 12 minutes on SQLite).
bench-big: venv bench-wrk
	$(BIN)/python bench/run_wrk.py --big $(BENCH_ARGS)

# Where the time of the status and ingest endpoints goes (cProfile, in-process).
bench-profile: venv
	$(BIN)/python bench/profile_app.py $(BENCH_ARGS)
