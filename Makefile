# Makefile for subexpire (PGXS)

EXTENSION = subexpire
MODULE_big = subexpire
OBJS = \
	src/expire.o \
	src/runs.o \
	src/health.o \
	src/schedule.o \
	src/schedule_sql.o \
	src/stats.o \
	src/subexpire.o \
	src/subxact.o \
	src/target.o \
	src/worker.o
PGFILEDESC = "subexpire - expire due subscriptions inside PostgreSQL"

DATA = sql/subexpire--1.0.sql

# pg_regress: sql/<name>.sql against expected/<name>.out
REGRESS = setup expire config partitioned plan locked schedule monitoring errors privileges security hostile
REGRESS_OPTS = --temp-instance=tmp_check_regress --temp-config=test/subexpire.conf

# isolation tests: test/specs/<name>.spec against test/expected/<name>.out
ISOLATION = overlapping_runs locked_rows renewal notify repeatable_read
ISOLATION_OPTS = --inputdir=test --temp-instance=tmp_check_iso \
	--temp-config=test/subexpire.conf

# TAP tests: test/t/*.pl, each on clusters of its own
TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

EXTRA_CLEAN = tmp_check_regress tmp_check_iso output_iso

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The benchmark at a small size: proves it still works, times nothing.
.PHONY: bench-smoke
bench-smoke:
	test/bench/bench.sh --rows 20000 --due 0.2 --pairs 1
