# Makefile for subexpire (PGXS)

EXTENSION = subexpire
MODULE_big = subexpire
OBJS = \
	src/distributed.o \
	src/events.o \
	src/expire.o \
	src/extension.o \
	src/failed_rows.o \
	src/health.o \
	src/metrics.o \
	src/next_run.o \
	src/own_table.o \
	src/owner.o \
	src/records.o \
	src/rule_check.o \
	src/rules.o \
	src/run.o \
	src/run_worker.o \
	src/run_xacts.o \
	src/schedule.o \
	src/scheduler.o \
	src/settings.o \
	src/shmem.o \
	src/srf.o \
	src/statement.o \
	src/stats.o \
	src/subexpire.o \
	src/subxact.o \
	src/target.o \
	src/walwriter.o
PGFILEDESC = "subexpire - expire due subscriptions inside PostgreSQL"

# The install script of 1.0 and the update scripts: CREATE EXTENSION runs
# the chain up to default_version; ALTER EXTENSION UPDATE the rest of it.
DATA = $(wildcard sql/subexpire--*.sql)

# pg_regress: sql/<name>.sql against expected/<name>.out
REGRESS = setup expire config partitioned plan locked schedule monitoring errors privileges security hostile owner rules events failed_rows
REGRESS_OPTS = --temp-instance=tmp_check_regress --temp-config=test/subexpire.conf

# isolation tests: test/specs/<name>.spec against test/expected/<name>.out
ISOLATION = overlapping_runs locked_rows renewal notify repeatable_read lock_bounds rules_overlap events failed_rows
ISOLATION_OPTS = --inputdir=test --temp-instance=tmp_check_iso \
	--temp-config=test/subexpire.conf

# TAP tests: test/t/*.pl, each on clusters of its own
TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

EXTRA_CLEAN = tmp_check_regress tmp_check_iso output_iso \
	test/fuzz/fuzz_schedule test/fuzz/*.o test/fuzz/run

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies (unless PostgreSQL was configured
# with --enable-depend): rebuild every object when a header changes.
$(OBJS) $(OBJS:.o=.bc): $(wildcard src/*.h)

# The benchmark at a small size: proves it still works, times nothing.
.PHONY: bench-smoke
bench-smoke:
	test/bench/bench.sh --rows 20000 --due 0.2 --pairs 1
	test/bench/rules.sh --rows 20000 --due 4000 --pairs 1
	test/bench/events.sh --rows 20000 --due 4000 --pairs 1
	test/bench/poisoned.sh --rows 20000 --due 4000 --poisoned 10 --pairs 1

# The schedule fuzzer (test/fuzz/README.md): src/schedule.c under libFuzzer,
# AddressSanitizer and UndefinedBehaviorSanitizer, for FUZZ_SECONDS on a
# copy of the seed corpus.  Fails on a crash, a hang, a sanitizer report or
# a broken check.  Needs clang-14 and libclang-rt-14-dev.
FUZZ_CC ?= clang-14
FUZZ_SECONDS ?= 60
FUZZ_SANITIZE = -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS = -g -O1 -fno-omit-frame-pointer -D_GNU_SOURCE \
	-I$(includedir_server) -Isrc -Wall -Wmissing-prototypes \
	-Wno-ignored-attributes -Wno-compound-token-split-by-macro

# schedule.c with all the coverage and comparison tracing that libFuzzer
# steers by; the harness's checks without comparison tracing, and its model
# of the server without coverage: in their loops, those only slow it down.
test/fuzz/fuzz_schedule: src/schedule.c src/schedule.h \
		test/fuzz/fuzz_schedule.c test/fuzz/backend_model.c \
		test/fuzz/backend_model.h
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SANITIZE) \
		-c -o test/fuzz/backend_model.o test/fuzz/backend_model.c
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SANITIZE) -fsanitize=fuzzer-no-link \
		-fno-sanitize-coverage=trace-cmp \
		-c -o test/fuzz/fuzz_schedule.o test/fuzz/fuzz_schedule.c
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=all -o $@ src/schedule.c \
		test/fuzz/fuzz_schedule.o test/fuzz/backend_model.o \
		-L$(pkglibdir) -L$(libdir) -lpgport_shlib

.PHONY: fuzz
fuzz: test/fuzz/fuzz_schedule
	test/fuzz/run.sh $(FUZZ_SECONDS)

# Memory checking, on builds that are never installed: the servers load the
# library through dynamic_library_path (subexpire.control names it without
# $libdir), so a test run here cannot disturb the installed subexpire.so.
# Both need the extension installed (its control file and SQL script) and
# run as a user PostgreSQL accepts, not root.
#
# make sanitize-check: builds the library with AddressSanitizer and
# UndefinedBehaviorSanitizer in tmp_sanitize/ (a copy of the tree, so its
# outputs never collide with an installcheck running here), runs the whole
# installcheck there (regress, isolation, TAP) with the sanitizer runtimes
# preloaded into the temporary servers, checks that they loaded the
# sanitized build, and fails on a failed test or any sanitizer report.
# See scripts/sanitize-check.sh.
#
# make valgrind-check: runs the pg_regress suite against a server started
# under valgrind (memcheck) in tmp_valgrind/, loading this tree's build,
# and fails on a failed test or a valgrind error with a subexpire frame
# (PostgreSQL is not built for valgrind: errors in its own code alone are
# counted, not judged).  See scripts/valgrind-check.sh.
EXTRA_CLEAN += tmp_sanitize tmp_valgrind

.PHONY: sanitize-check valgrind-check
sanitize-check:
	PG_CONFIG='$(PG_CONFIG)' CC='$(CC)' MAKE='$(MAKE)' REGRESS='$(REGRESS)' \
		EXTRA_REGRESS_OPTS='$(EXTRA_REGRESS_OPTS)' scripts/sanitize-check.sh

valgrind-check: all
	PG_CONFIG='$(PG_CONFIG)' PG_REGRESS='$(top_builddir)/src/test/regress/pg_regress' \
		REGRESS='$(REGRESS)' scripts/valgrind-check.sh

# make dist: the release archive for PGXN, a zip of HEAD made by git archive
# (committed files only; .gitattributes leaves out what users of the
# extension do not need), named after META.json's version.  DIST_VERSION,
# since PGXS's VERSION is PostgreSQL's.
DIST_VERSION = $(shell perl -MJSON::PP -0777 -ne 'print decode_json($$_)->{version}' META.json)
EXTRA_CLEAN += $(EXTENSION)-*.zip

.PHONY: dist
dist:
	@git rev-parse --verify -q HEAD >/dev/null 2>&1 || { \
		echo "make dist: needs a git checkout (the archive is made from HEAD)" >&2; \
		exit 1; }
	@git diff --quiet HEAD -- || \
		echo "make dist: warning: uncommitted changes are not in the archive, made from HEAD" >&2
	git archive --format=zip --prefix=$(EXTENSION)-$(DIST_VERSION)/ \
		-o $(EXTENSION)-$(DIST_VERSION).zip HEAD

# make lint: the module graph (lint-includes), cppcheck (lint-cppcheck)
# and a compile with more warnings, as errors (lint-compile).  CI runs
# lint-includes and lint-compile.
.PHONY: lint lint-compile lint-cppcheck lint-includes
lint: lint-includes lint-cppcheck lint-compile

# The modules of src/ and their #include lines: fails on a cycle, on a
# header that declares what its module does not define, and on a function
# exported without a declaration in its module's header
# (scripts/check-includes.pl; --list prints the graph).
lint-includes:
	scripts/check-includes.pl src

# Every source file compiled with PostgreSQL's own warning options (its
# CFLAGS, as the build uses them, optimisation included: some warnings
# need it) plus -Wextra, all as errors, into /dev/null: the build's objects
# are not touched.  -Wextra less the three that PostgreSQL's code does not
# follow, as builds of PostgreSQL with -Wextra turn them off: unused
# parameters (its own headers have them, and every fmgr function, hook and
# GUC callback has parameters it may not need), comparisons of signed with
# unsigned values, and struct initialisers that leave members zero.
LINT_CFLAGS = -Wextra -Wno-unused-parameter -Wno-sign-compare \
	-Wno-missing-field-initializers -Werror

lint-compile:
	@set -e; for f in $(OBJS:.o=.c); do \
		echo "lint-compile: $$f"; \
		$(CC) $(CFLAGS) $(CFLAGS_SL) $(LINT_CFLAGS) $(CPPFLAGS) \
			-c -o /dev/null $$f; \
	done

# cppcheck over src/ with PostgreSQL's server headers, in one configuration
# (gcc on x86_64 Linux, as built here); any finding fails.  Left out, as
# noise: findings inside PostgreSQL's headers (float.h divides 0.0 by 0.0
# on purpose), shadowFunction (fmgrprotos.h declares a C function for every
# SQL function, so a local variable named now or time "shadows" one), and
# variableScope (pgindent style declares variables at the top of a block,
# and those used across PG_TRY must be declared outside it).
CPPCHECK ?= cppcheck
CPPCHECK_FLAGS = --enable=warning,style,performance,portability --std=c99 \
	--quiet --error-exitcode=1 --inline-suppr \
	--template='{file}:{line}: {severity}: {message} [{id}]' \
	-D__GNUC__=12 -D__x86_64__ -D__linux__ \
	-Isrc -I$(includedir_server) \
	--suppress='*:$(includedir_server)/*' \
	--suppress=shadowFunction --suppress=variableScope

lint-cppcheck:
	@command -v $(CPPCHECK) >/dev/null 2>&1 || { \
		echo "make lint: $(CPPCHECK) is not installed (Debian: apt-get install cppcheck)" >&2; \
		exit 1; }
	$(CPPCHECK) $(CPPCHECK_FLAGS) src

# make indent: pgindent's formatting of every C file, with pg_bsd_indent
# (Debian package pg-bsd-indent) and typedefs.list; see scripts/pgindent.pl
# for what it keeps of pgindent.  make typedefs: rewrites typedefs.list
# from the C files (scripts/find-typedefs.sh); run it after adding a
# typedef, then make indent.
PG_BSD_INDENT ?= pg_bsd_indent
INDENT_FILES = $(wildcard src/*.c src/*.h \
	test/fuzz/*.c test/fuzz/*.h \
	test/sanitize/*.c)

.PHONY: indent typedefs
indent:
	@command -v $(PG_BSD_INDENT) >/dev/null 2>&1 || { \
		echo "make indent: $(PG_BSD_INDENT) is not installed (Debian: apt-get install pg-bsd-indent)" >&2; \
		exit 1; }
	scripts/pgindent.pl --indent=$(PG_BSD_INDENT) \
		--typedefs=typedefs.list $(INDENT_FILES)

typedefs:
	CC='$(CC)' CPPFLAGS='$(CPPFLAGS) -Isrc' \
		scripts/find-typedefs.sh $(INDENT_FILES) > typedefs.list
