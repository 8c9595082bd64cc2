# HTTP benchmarks (bench/README.md), included by the Makefile: `include bench/bench.mk`.
# Uses $(BIN) and the `venv` target from the Makefile.  BENCH_ARGS passes options through,
# e.g. make bench BENCH_ARGS="--rounds 2 --compare /tmp/before" BENCH_PG_URL=postgresql+psycopg://postgres@127.0.0.1:5432/bench_x
BENCH_ARGS ?=
# The PostgreSQL database of the benchmark: emptied by every run, created when missing.
BENCH_PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/bench_http

.PHONY: bench bench-big bench-profile bench-wrk bench-instructions

bench-wrk:
	command -v wrk || (apt-get update && apt-get install -y wrk)

# The issue #16 table on SQLite, then on PostgreSQL, 3 rounds of 10 s per row (about 15 minutes),
# written into docs/performance.md with the machine.
bench: venv bench-wrk
	$(BIN)/python bench/run_wrk.py --database sqlite --database $(BENCH_PG_URL) --write-doc docs/performance.md $(BENCH_ARGS)

# The same, then again after storing 1,000,000 provider events (about 12 minutes on SQLite).
bench-big: venv bench-wrk
	$(BIN)/python bench/run_wrk.py --big --database sqlite --database $(BENCH_PG_URL) $(BENCH_ARGS)

# Where the time of the status and ingest endpoints goes (cProfile, in-process).
bench-profile: venv
	$(BIN)/python bench/profile_app.py $(BENCH_ARGS)

# Client instructions per request, counted by callgrind (bench/instructions.py): repeatable where CPU time is not,
# e.g. make bench-instructions BENCH_ARGS="--endpoint new --compare /tmp/before"
bench-instructions: venv
	command -v valgrind || (apt-get update && apt-get install -y valgrind)
	$(BIN)/python bench/instructions.py $(BENCH_ARGS)
