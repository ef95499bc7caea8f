/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Statistics of the runs, in shared memory, and the SQL functions that
 *	  read them: subexpire_stats, subexpire_metrics(), the duration
 *	  histogram, and subexpire_stats_reset().
 *
 * Every run is counted, whoever started it.  A run that fails is counted
 * as failed at once, with its time and message, although its transaction
 * rolls back; a manual run that succeeded is counted when its caller's
 * transaction commits (and as failed if that transaction rolls back
 * instead), so that the figures agree with the rows that stay expired.
 *
 * The statistics survive a clean restart: the postmaster writes them to a
 * file at shutdown and reads them back at start, as pg_stat_statements
 * does; after a crash they start from zero.
 *
 * IDENTIFICATION
 *	  src/stats.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <unistd.h>

#include "access/subtrans.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "subexpire.h"

#define STATS_FILE	PGSTAT_STAT_PERMANENT_DIRECTORY "/subexpire.stat"
#define STATS_FILE_MAGIC 0x53584532 /* "SXE2" */
#define STATS_FILE_MAGIC_1_0 0x53584531 /* "SXE1": library 1.0 */

/* Upper bounds, in seconds, of the run-duration histogram's buckets. */
static const double duration_bounds[] = {
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600
};
#define DURATION_BUCKETS (lengthof(duration_bounds) + 1)	/* + Inf */

typedef struct SubexpireCounters
{
	int64		runs_total;
	int64		runs_failed;
	int64		expired_total;
	TimestampTz last_run_started_at;
	TimestampTz last_success_at;
	TimestampTz last_failure_at;
	TimestampTz last_expiry_at; /* last run that expired a row */
	int64		last_run_duration;	/* microseconds */
	int64		last_run_expired;
	char		last_error[256];
	int64		duration_counts[DURATION_BUCKETS];	/* not cumulative */
	double		duration_sum;	/* seconds */
	TimestampTz stats_reset;
	/* Added in 1.1, last, so that a 1.0 stats file is a prefix: */
	int64		last_run_longest_batch; /* microseconds; -1: none */
} SubexpireCounters;

/* How much of SubexpireCounters a stats file of library 1.0 holds. */
#define COUNTERS_SIZE_1_0 offsetof(SubexpireCounters, last_run_longest_batch)

/* How many expiry transactions in progress are remembered at once. */
#define MAX_RUN_XACTS 64

typedef struct SubexpireStats
{
	LWLock	   *lock;
	SubexpireCounters counters;
	/* Top-level xids of the expiry runs' transactions in progress. */
	TransactionId run_xacts[MAX_RUN_XACTS];
} SubexpireStats;

static SubexpireStats *stats = NULL;

static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif

/* A manual run that succeeded, counted when its transaction ends. */
typedef struct PendingRun
{
	bool		pending;
	TimestampTz started_at;
	TimestampTz finished_at;
	int64		expired;
} PendingRun;

static PendingRun pending_run;
static bool xact_callback_registered = false;

/* This backend's entry in run_xacts, while its transaction lasts. */
static int	run_xact_slot = -1;

/* ---- shared memory and the stats file ---- */

static void
stats_shmem_request(void)
{
#if PG_VERSION_NUM >= 150000
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	RequestAddinShmemSpace(MAXALIGN(sizeof(SubexpireStats)));
	RequestNamedLWLockTranche("subexpire stats", 1);
}

/* Write the counters to the stats file, at a clean shutdown. */
static void
stats_shmem_shutdown(int code, Datum arg)
{
	FILE	   *file;
	uint32		magic = STATS_FILE_MAGIC;

	/* After a crash, or in a process that is not the postmaster: no. */
	if (code != 0 || stats == NULL)
		return;

	file = AllocateFile(STATS_FILE ".tmp", PG_BINARY_W);
	if (file == NULL ||
		fwrite(&magic, sizeof(magic), 1, file) != 1 ||
		fwrite(&stats->counters, sizeof(SubexpireCounters), 1, file) != 1 ||
		FreeFile(file) != 0)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not write subexpire statistics file \"%s\": %m",
						STATS_FILE ".tmp")));
		if (file)
			FreeFile(file);
		unlink(STATS_FILE ".tmp");
		return;
	}
	(void) durable_rename(STATS_FILE ".tmp", STATS_FILE, LOG);
}

/*
 * Read the counters back from the stats file, if there is one.  A file
 * that library 1.0 wrote (the server restarted with a newer library) lacks
 * the counters added since: they start as "none".
 */
static void
load_stats_file(void)
{
	FILE	   *file = AllocateFile(STATS_FILE, PG_BINARY_R);
	uint32		magic;
	SubexpireCounters counters;

	if (file == NULL)
		return;
	memset(&counters, 0, sizeof(counters));
	counters.last_run_longest_batch = -1;
	if (fread(&magic, sizeof(magic), 1, file) == 1 &&
		((magic == STATS_FILE_MAGIC &&
		  fread(&counters, sizeof(counters), 1, file) == 1) ||
		 (magic == STATS_FILE_MAGIC_1_0 &&
		  fread(&counters, COUNTERS_SIZE_1_0, 1, file) == 1)))
		stats->counters = counters;
	else
		ereport(LOG,
				(errmsg("ignoring invalid subexpire statistics file \"%s\"",
						STATS_FILE)));
	FreeFile(file);
	/* Once read, the file is stale: a crash must not bring it back. */
	unlink(STATS_FILE);
}

static void
stats_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	stats = ShmemInitStruct("subexpire stats", sizeof(SubexpireStats), &found);
	if (!found)
	{
		memset(stats->run_xacts, 0, sizeof(stats->run_xacts));
		memset(&stats->counters, 0, sizeof(SubexpireCounters));
		stats->counters.last_run_longest_batch = -1;
		stats->counters.stats_reset = GetCurrentTimestamp();
		stats->lock = &(GetNamedLWLockTranche("subexpire stats"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);

	/* Only the postmaster reads the file at start and writes it at exit. */
	if (!IsUnderPostmaster)
	{
		if (!found)
			load_stats_file();
		on_shmem_exit(stats_shmem_shutdown, (Datum) 0);
	}
}

/* Called from _PG_init when the library is preloaded. */
void
subexpire_stats_init(void)
{
#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = stats_shmem_request;
#else
	stats_shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = stats_shmem_startup;
}

/* ---- counting runs ---- */

/*
 * Count a run that has ended: error is NULL for a success; expired is what
 * it committed.  Without the library preloaded there is no shared memory,
 * and nothing is counted.
 */
void
subexpire_stats_count_run(TimestampTz started_at, TimestampTz finished_at,
						  int64 expired, const char *error)
{
	subexpire_stats_count_worker_run(started_at, finished_at, expired, error,
									 -1);
}

/*
 * Count a run of the worker, which also knows its longest batch, in
 * microseconds (-1 when none of its transactions expired a row).  A manual
 * run's transaction is its caller's: it has no such figure.
 */
void
subexpire_stats_count_worker_run(TimestampTz started_at,
								 TimestampTz finished_at, int64 expired,
								 const char *error, int64 longest_batch)
{
	SubexpireCounters *c;
	int64		duration = finished_at - started_at;
	double		seconds = (double) duration / USECS_PER_SEC;
	int			bucket = 0;

	if (stats == NULL)
		return;

	while (bucket < lengthof(duration_bounds) && seconds > duration_bounds[bucket])
		bucket++;

	LWLockAcquire(stats->lock, LW_EXCLUSIVE);
	c = &stats->counters;
	c->runs_total++;
	c->last_run_started_at = started_at;
	c->last_run_duration = duration;
	c->duration_counts[bucket]++;
	c->duration_sum += seconds;
	/* A failed worker run may have committed batches before it failed. */
	c->expired_total += expired;
	c->last_run_expired = expired;
	c->last_run_longest_batch = longest_batch;
	if (expired > 0)
		c->last_expiry_at = started_at;
	if (error == NULL)
		c->last_success_at = started_at;
	else
	{
		c->runs_failed++;
		c->last_failure_at = finished_at;
		strlcpy(c->last_error, error, sizeof(c->last_error));
	}
	LWLockRelease(stats->lock);
}

/* Forget this backend's transaction in run_xacts. */
static void
unregister_run_xact(void)
{
	if (run_xact_slot < 0 || stats == NULL)
		return;
	LWLockAcquire(stats->lock, LW_EXCLUSIVE);
	stats->run_xacts[run_xact_slot] = InvalidTransactionId;
	LWLockRelease(stats->lock);
	run_xact_slot = -1;
}

static void
count_pending_run(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		unregister_run_xact();
	if (!pending_run.pending)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
		subexpire_stats_count_run(pending_run.started_at,
								  pending_run.finished_at,
								  pending_run.expired, NULL);
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		subexpire_stats_count_run(pending_run.started_at,
								  pending_run.finished_at, 0,
								  "the transaction that ran it rolled back");
	else
		return;
	pending_run.pending = false;
}

static void
ensure_xact_callback(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(count_pending_run, NULL);
		xact_callback_registered = true;
	}
}

/*
 * The current transaction expires subscriptions: remember it until it
 * ends, so that a run that finds rows locked by it knows that they are
 * being expired, not held by the application.
 */
void
subexpire_register_run_xact(void)
{
	TransactionId xid;

	if (stats == NULL || run_xact_slot >= 0)
		return;
	xid = GetTopTransactionId();
	ensure_xact_callback();
	LWLockAcquire(stats->lock, LW_EXCLUSIVE);
	for (int i = 0; i < MAX_RUN_XACTS; i++)
		if (!TransactionIdIsValid(stats->run_xacts[i]))
		{
			stats->run_xacts[i] = xid;
			run_xact_slot = i;
			break;
		}
	LWLockRelease(stats->lock);
}

/*
 * Is xid (a row's locker) a transaction of an expiry run still in
 * progress?  Without the library preloaded nobody is remembered: no.
 */
bool
subexpire_is_run_xact(TransactionId xid)
{
	bool		found = false;

	if (stats == NULL || !TransactionIdIsNormal(xid) ||
		!TransactionIdIsInProgress(xid))
		return false;
	xid = SubTransGetTopmostTransaction(xid);
	LWLockAcquire(stats->lock, LW_SHARED);
	for (int i = 0; i < MAX_RUN_XACTS && !found; i++)
		found = TransactionIdEquals(stats->run_xacts[i], xid);
	LWLockRelease(stats->lock);
	return found;
}

/*
 * A manual run succeeded in the current transaction: count it when the
 * transaction ends.  (A second run in the same transaction counts the
 * first now.)
 */
void
subexpire_stats_run_succeeded_in_xact(TimestampTz started_at,
									  TimestampTz finished_at, int64 expired)
{
	ensure_xact_callback();
	if (pending_run.pending)
		subexpire_stats_count_run(pending_run.started_at,
								  pending_run.finished_at,
								  pending_run.expired, NULL);
	pending_run.pending = true;
	pending_run.started_at = started_at;
	pending_run.finished_at = finished_at;
	pending_run.expired = expired;
}

/*
 * Whether the last run has a longest batch: a worker run that expired rows
 * (NULL in subexpire_stats, 0 in subexpire_metrics() otherwise).
 */
static bool
has_longest_batch(const SubexpireCounters *c)
{
	return c->runs_total > 0 && c->last_run_longest_batch >= 0;
}

static SubexpireCounters
read_counters(void)
{
	SubexpireCounters c;

	if (stats == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("subexpire statistics are not available"),
				 errdetail("They live in shared memory, which the library gets only when it is preloaded."),
				 errhint("Add subexpire to shared_preload_libraries and restart the server.")));
	LWLockAcquire(stats->lock, LW_SHARED);
	c = stats->counters;
	LWLockRelease(stats->lock);
	return c;
}

/* ---- due_now ---- */

/*
 * The rows due now, or -1 when they cannot be counted (the target is
 * missing, say): monitoring must keep working when the job cannot.  The
 * count runs with the rights of the table's owner (see
 * subexpire_open_target()), so that a member of pg_monitor sees it without
 * reading the subscriptions themselves, and the owner's code (a domain's
 * check on the status words) runs with no more rights than the owner's.
 */
static void
count_due_step(void *arg)
{
	int64	   *due = arg;
	SubexpireTarget *target;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	target = subexpire_open_target(SUBEXPIRE_FOR_MONITOR);
	*due = subexpire_count_due(target, GetCurrentTimestamp());
	subexpire_close_target(target);
	SPI_finish();
}

static int64
count_due_now(void)
{
	int64		due = -1;
	ErrorData  *error = subexpire_try(count_due_step, &due);

	if (error != NULL)
	{
		FreeErrorData(error);
		return -1;
	}
	return due;
}

/* A duration in microseconds as an interval Datum. */
static Datum
interval_datum(int64 usecs)
{
	Interval   *interval = palloc0(sizeof(Interval));

	interval->time = usecs;
	return IntervalPGetDatum(interval);
}

static double
unix_seconds(TimestampTz t)
{
	if (t == 0)
		return 0;
	return (double) (t - SetEpochTimestamp()) / USECS_PER_SEC;
}

/* ---- SQL functions ---- */

/*
 * subexpire_stats reads one row from a C function whose columns depend on
 * the version of the extension's SQL objects, as pg_stat_statements does:
 * each version's SQL declares its own entry point, and the library keeps
 * the entry points of every version, so that a new library serves the
 * view of SQL objects that ALTER EXTENSION subexpire UPDATE has not
 * brought up to date yet.
 */
typedef enum StatsApiVersion
{
	STATS_V1_0,
	STATS_V1_1
} StatsApiVersion;

#define STATS_COLS_V1_0 15
#define STATS_COLS_V1_1 16
#define STATS_COLS 16			/* the most of any version */

static Datum
stats_internal(FunctionCallInfo fcinfo, StatsApiVersion api_version)
{
	SubexpireCounters c;
	TupleDesc	tupdesc;
	Datum		values[STATS_COLS];
	bool		nulls[STATS_COLS];
	int			expected_cols;
	int			worker_pid;
	TimestampTz next_run_at;
	int64		due;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	/*
	 * The function must have been declared with the columns of the entry
	 * point it names: an older or hand-made declaration must get an error,
	 * not a tuple built to another shape.
	 */
	expected_cols = (api_version == STATS_V1_0) ? STATS_COLS_V1_0 : STATS_COLS_V1_1;
	if (tupdesc->natts != expected_cols)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("subexpire's SQL objects do not match its library"),
				 errdetail("Function %s returns %d columns, but the library's entry point %s returns %d.",
						   get_func_name(fcinfo->flinfo->fn_oid),
						   tupdesc->natts,
						   api_version == STATS_V1_0
						   ? "subexpire_stats_internal"
						   : "subexpire_stats_internal_1_1",
						   expected_cols),
				 errhint("Run ALTER EXTENSION subexpire UPDATE.")));

	c = read_counters();
	memset(nulls, false, sizeof(nulls));
	subexpire_worker_status(&worker_pid, &next_run_at);
	due = count_due_now();

	values[0] = Int64GetDatum(c.runs_total);
	values[1] = Int64GetDatum(c.runs_failed);
	values[2] = Int64GetDatum(c.expired_total);
	values[3] = TimestampTzGetDatum(c.last_run_started_at);
	nulls[3] = (c.last_run_started_at == 0);
	values[4] = TimestampTzGetDatum(c.last_success_at);
	nulls[4] = (c.last_success_at == 0);
	values[5] = TimestampTzGetDatum(c.last_failure_at);
	nulls[5] = (c.last_failure_at == 0);
	values[6] = CStringGetTextDatum(c.last_error);
	nulls[6] = (c.last_error[0] == '\0');
	values[7] = interval_datum(c.last_run_duration);
	nulls[7] = (c.runs_total == 0);
	values[8] = Float8GetDatum(c.duration_sum);
	values[9] = Int64GetDatum(c.last_run_expired);
	nulls[9] = (c.runs_total == 0);
	values[10] = TimestampTzGetDatum(c.last_expiry_at);
	nulls[10] = (c.last_expiry_at == 0);
	values[11] = TimestampTzGetDatum(next_run_at);
	nulls[11] = (next_run_at == 0);
	values[12] = Int32GetDatum(worker_pid);
	nulls[12] = (worker_pid == 0);
	values[13] = Int64GetDatum(due);
	nulls[13] = (due < 0);
	values[14] = TimestampTzGetDatum(c.stats_reset);
	if (api_version >= STATS_V1_1)
	{
		values[15] = interval_datum(c.last_run_longest_batch);
		nulls[15] = !has_longest_batch(&c);
	}

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* The entry point of the SQL objects of version 1.0. */
PG_FUNCTION_INFO_V1(subexpire_stats_internal);

Datum
subexpire_stats_internal(PG_FUNCTION_ARGS)
{
	return stats_internal(fcinfo, STATS_V1_0);
}

/* Version 1.1 adds last_run_longest_batch. */
PG_FUNCTION_INFO_V1(subexpire_stats_internal_1_1);

Datum
subexpire_stats_internal_1_1(PG_FUNCTION_ARGS)
{
	return stats_internal(fcinfo, STATS_V1_1);
}

PG_FUNCTION_INFO_V1(subexpire_stats_reset);

Datum
subexpire_stats_reset(PG_FUNCTION_ARGS)
{
	(void) read_counters();		/* errors out when not preloaded */
	LWLockAcquire(stats->lock, LW_EXCLUSIVE);
	memset(&stats->counters, 0, sizeof(SubexpireCounters));
	stats->counters.last_run_longest_batch = -1;
	stats->counters.stats_reset = GetCurrentTimestamp();
	LWLockRelease(stats->lock);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(subexpire_duration_buckets);

Datum
subexpire_duration_buckets(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SubexpireCounters c = read_counters();
	TupleDesc	tupdesc;
	Tuplestorestate *tupstore;
	MemoryContext caller_context;
	int64		cumulative = 0;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		(rsinfo->allowedModes & SFRM_Materialize) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("subexpire_duration_buckets() must be called where a set can be returned")));
	caller_context = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupstore = tuplestore_begin_heap(false, false, work_mem);
	for (int i = 0; i < DURATION_BUCKETS; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		cumulative += c.duration_counts[i];
		values[0] = Float8GetDatum(i < lengthof(duration_bounds) ? duration_bounds[i] : get_float8_infinity());
		values[1] = Int64GetDatum(cumulative);
		tuplestore_putvalues(tupstore, tupdesc, values, nulls);
	}
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = tupstore;
	rsinfo->setDesc = tupdesc;
	MemoryContextSwitchTo(caller_context);
	return (Datum) 0;
}

static void
append_metric(StringInfo out, const char *name, const char *type,
			  const char *help)
{
	appendStringInfo(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

PG_FUNCTION_INFO_V1(subexpire_metrics);

/*
 * subexpire_metrics() RETURNS text: the statistics in Prometheus text
 * exposition format, with the names that application-side expiry jobs
 * export, so that existing dashboards and alerts keep working.
 */
Datum
subexpire_metrics(PG_FUNCTION_ARGS)
{
	SubexpireCounters c = read_counters();
	StringInfoData out;
	int			worker_pid;
	TimestampTz next_run_at;
	int64		due = count_due_now();
	int64		cumulative = 0;

	subexpire_worker_status(&worker_pid, &next_run_at);
	initStringInfo(&out);

	append_metric(&out, "subscription_expiry_total", "counter",
				  "Subscriptions expired since the statistics were reset.");
	appendStringInfo(&out, "subscription_expiry_total " INT64_FORMAT "\n",
					 c.expired_total);

	append_metric(&out, "subscription_expiry_duration_seconds", "histogram",
				  "How long expiry runs took.");
	for (int i = 0; i < DURATION_BUCKETS; i++)
	{
		cumulative += c.duration_counts[i];
		if (i < lengthof(duration_bounds))
			appendStringInfo(&out, "subscription_expiry_duration_seconds_bucket{le=\"%g\"} " INT64_FORMAT "\n",
							 duration_bounds[i], cumulative);
		else
			appendStringInfo(&out, "subscription_expiry_duration_seconds_bucket{le=\"+Inf\"} " INT64_FORMAT "\n",
							 cumulative);
	}
	appendStringInfo(&out, "subscription_expiry_duration_seconds_sum %.6f\n",
					 c.duration_sum);
	appendStringInfo(&out, "subscription_expiry_duration_seconds_count " INT64_FORMAT "\n",
					 c.runs_total);

	append_metric(&out, "subscription_expiry_runs_total", "counter",
				  "Expiry runs, by outcome.");
	appendStringInfo(&out, "subscription_expiry_runs_total{status=\"succeeded\"} " INT64_FORMAT "\n",
					 c.runs_total - c.runs_failed);
	appendStringInfo(&out, "subscription_expiry_runs_total{status=\"failed\"} " INT64_FORMAT "\n",
					 c.runs_failed);

	append_metric(&out, "subscription_expiry_last_success_timestamp_seconds", "gauge",
				  "When the last successful run started, in Unix time; 0 if none.");
	appendStringInfo(&out, "subscription_expiry_last_success_timestamp_seconds %.3f\n",
					 unix_seconds(c.last_success_at));

	append_metric(&out, "subscription_expiry_last_expiry_timestamp_seconds", "gauge",
				  "When the last run that expired a subscription started, in Unix time; 0 if none.");
	appendStringInfo(&out, "subscription_expiry_last_expiry_timestamp_seconds %.3f\n",
					 unix_seconds(c.last_expiry_at));

	append_metric(&out, "subscription_expiry_last_run_expired", "gauge",
				  "Subscriptions expired by the last run.");
	appendStringInfo(&out, "subscription_expiry_last_run_expired " INT64_FORMAT "\n",
					 c.last_run_expired);

	append_metric(&out, "subscription_expiry_last_run_longest_batch_seconds", "gauge",
				  "How long the last worker run held rows locked at most; 0 if none.");
	appendStringInfo(&out, "subscription_expiry_last_run_longest_batch_seconds %.6f\n",
					 has_longest_batch(&c) ? c.last_run_longest_batch / 1000000.0 : 0.0);

	if (due >= 0)
	{
		append_metric(&out, "subscription_expiry_due", "gauge",
					  "Subscriptions due now, not yet expired.");
		appendStringInfo(&out, "subscription_expiry_due " INT64_FORMAT "\n", due);
	}

	append_metric(&out, "subscription_expiry_next_run_timestamp_seconds", "gauge",
				  "When the background worker runs next, in Unix time; 0 if it is not scheduled.");
	appendStringInfo(&out, "subscription_expiry_next_run_timestamp_seconds %.3f\n",
					 unix_seconds(next_run_at));

	PG_RETURN_TEXT_P(cstring_to_text_with_len(out.data, out.len));
}

/* When the statistics were last reset (or first started). */
TimestampTz
subexpire_stats_reset_time(void)
{
	return read_counters().stats_reset;
}

/* The counters health checks need (src/health.c). */
void
subexpire_stats_for_health(TimestampTz *last_success_at,
						   TimestampTz *last_failure_at,
						   TimestampTz *last_run_started_at,
						   TimestampTz *last_expiry_at,
						   int64 *last_run_expired, char *last_error,
						   Size last_error_size)
{
	SubexpireCounters c = read_counters();

	*last_success_at = c.last_success_at;
	*last_failure_at = c.last_failure_at;
	*last_run_started_at = c.last_run_started_at;
	*last_expiry_at = c.last_expiry_at;
	*last_run_expired = c.last_run_expired;
	strlcpy(last_error, c.last_error, last_error_size);
}
