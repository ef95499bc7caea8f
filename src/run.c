/*-------------------------------------------------------------------------
 *
 * run.c
 *	  The life of a run, one copy for expire_subscriptions() and the
 *	  background worker: the guard against a wrong clock, the record, the
 *	  expiry, the pruning of old records, the announcement (a LOG line and
 *	  NOTIFY subexpire) and the count in the statistics.
 *
 * A manual run (expire_subscriptions(), pg_cron) is one transaction, its
 * caller's: the run is recorded when it has expired its rows, and counted
 * when that transaction commits, so that the record and the figures agree
 * with the rows that stay expired.  A run that fails is counted at once;
 * its record rolls back with it.
 *
 * The worker's run is many transactions: one that records it as running,
 * one for each list of due rows and one for each batch (which adds to the
 * record in the same transaction, so that the record is true after a
 * crash), and a last one that comes back for the rows the batches could
 * not take and closes the record.  A run that fails is recorded as failed
 * in a transaction of its own, and counted with the rows its committed
 * batches expired.
 *
 * IDENTIFICATION
 *	  src/run.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "distributed.h"
#include "expire.h"
#include "records.h"
#include "run.h"
#include "run_xacts.h"
#include "settings.h"
#include "srf.h"
#include "statement.h"
#include "stats.h"
#include "target.h"
#include "walwriter.h"

/* A run, from its start to its count. */
typedef struct Run
{
	const char *trigger;		/* 'manual', 'schedule' or 'catch-up' */
	TimestampTz as_of;			/* the cutoff */
	TimestampTz started_at;		/* also the time set in the updated-at column */
	bool		in_caller_xact; /* a manual run: one transaction, the caller's */
	int64		run_id;			/* 0 until its record is committed (worker) or
								 * written (manual) */
	SubexpireRunResult total;
	int64		committed;		/* worker: expired by committed batches */
	int64		longest;		/* worker: the longest batch that expired
								 * rows, in microseconds; -1: none */
	SubexpireRunWrites *writes;
	SubexpireDueRows *due_rows; /* worker: its lists of due rows */
} Run;

/* ---- the worker's steps ---- */

/* Take a reload that came while the run worker waited or worked. */
void
subexpire_take_reload(void)
{
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/*
 * Start a transaction for one step of the worker's run, as worker_spi
 * does, taking a reload that came meanwhile.  The statements on the target
 * act as its owner (see subexpire_open_target()), whatever role the worker
 * runs as.
 */
void
subexpire_begin_step(const char *activity)
{
	subexpire_take_reload();
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

void
subexpire_end_step(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(true);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * In a PG_CATCH() of a step: the error, copied into "context", and the
 * step's transaction aborted.
 */
ErrorData *
subexpire_catch_step_error(MemoryContext context)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(context);
	edata = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	return edata;
}

/* ---- the life of a run ---- */

static Run *
new_run(const char *trigger, TimestampTz as_of, TimestampTz started_at,
		bool in_caller_xact)
{
	Run		   *run = palloc0(sizeof(Run));

	run->trigger = trigger;
	run->as_of = as_of;
	run->started_at = started_at;
	run->in_caller_xact = in_caller_xact;
	run->longest = -1;
	run->writes = subexpire_run_writes_create(CurrentMemoryContext);
	if (!in_caller_xact)
		run->due_rows = subexpire_due_rows_create(CurrentMemoryContext);
	return run;
}

/* Refuse a run that would expire more rows than the guard allows. */
static void
check_limit(int64 count, TimestampTz as_of)
{
	if (subexpire_max_expired_per_run > 0 &&
		count > subexpire_max_expired_per_run)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("refusing to expire %lld subscriptions, more than subexpire.max_expired_per_run (%d)",
						(long long) count, subexpire_max_expired_per_run),
				 errdetail("Nothing was changed.  %lld subscriptions are due at %s.",
						   (long long) count, timestamptz_to_str(as_of)),
				 errhint("Check the clock and the expiry data.  If the number is right, raise subexpire.max_expired_per_run, or set it to 0 for this run.")));
}

/*
 * Expire the due rows that are left, in the current transaction: all of
 * them in a manual run; in the worker's last step, those its batches could
 * not take, unless they took them all ("skip": why, see TableDueRows in
 * src/expire.c).  Returns what this step did.
 */
static SubexpireRunResult
expire_rest(Run *run, SubexpireTarget *target, bool skip)
{
	SubexpireRunResult added = {0, 0, 0};
	int64		kept_before = subexpire_run_writes_kept(run->writes);

	subexpire_register_run_xact();
	if (!skip)
		added = subexpire_expire_due(target, run->as_of, run->started_at,
									 run->writes);
	added.kept_active = subexpire_run_writes_kept(run->writes) - kept_before;
	subexpire_warn_kept_rows(target, run->writes);
	return added;
}

/*
 * Tell the world about a run that is about to commit: one LOG line with
 * its trigger, cutoff, count and duration, and, when it expired rows,
 * NOTIFY subexpire with a JSON payload, delivered when its transaction
 * commits (and not at all if it rolls back).
 */
static void
announce_run(const Run *run, TimestampTz finished_at)
{
	const SubexpireRunResult *result = &run->total;

	ereport(LOG,
			(errmsg("subexpire: %s run %lld expired %lld subscriptions due at %s in %.3f s%s%s",
					run->trigger, (long long) run->run_id,
					(long long) result->expired_count,
					timestamptz_to_str(run->as_of),
					(double) (finished_at - run->started_at) / USECS_PER_SEC,
					result->skipped_locked > 0
					? psprintf(", and left %lld locked by other transactions for the next run",
							   (long long) result->skipped_locked)
					: "",
					result->kept_active > 0
					? psprintf("; %lld more stayed due, their status kept by a trigger",
							   (long long) result->kept_active)
					: "")));

	if (result->expired_count > 0)
	{
		char	   *as_of_text = JsonEncodeDateTime(NULL, TimestampTzGetDatum(run->as_of),
													TIMESTAMPTZOID, NULL);

		Async_Notify("subexpire",
					 psprintf("{\"run_id\":%lld,\"expired_count\":%lld,\"as_of\":\"%s\"}",
							  (long long) run->run_id,
							  (long long) result->expired_count, as_of_text));
	}
}


/*
 * The run has expired its rows; in its last transaction, before the
 * commit: add its last step, "last", to its totals, write or close its
 * record, prune old records and announce it.  Returns when it finished.
 */
static TimestampTz
finish_run(Run *run, const SubexpireRunResult *last)
{
	TimestampTz finished_at;

	run->total.expired_count += last->expired_count;
	run->total.skipped_locked = last->skipped_locked;
	run->total.kept_active = subexpire_run_writes_kept(run->writes);

	/*
	 * Rows that became due while a manual run went on count too; a worker's
	 * committed batches cannot be taken back.
	 */
	if (run->in_caller_xact)
		check_limit(run->total.expired_count, run->as_of);

	finished_at = GetCurrentTimestamp();
	if (run->run_id == 0)
		run->run_id = subexpire_record_run(run->trigger, run->as_of,
										   run->started_at, finished_at,
										   "succeeded", &run->total, NULL);
	else
		subexpire_update_run(run->run_id, last, "succeeded", NULL,
							 run->longest);
	subexpire_prune_runs();
	announce_run(run, finished_at);
	return finished_at;
}

/*
 * Count a run that succeeded: a manual run when its caller's transaction
 * ends, the worker's now that its last transaction has committed.
 */
static void
count_success(const Run *run, TimestampTz finished_at)
{
	if (run->in_caller_xact)
		subexpire_stats_count_at_commit(run->started_at, finished_at,
										run->total.expired_count);
	else
		subexpire_stats_count_run(run->started_at, finished_at,
								  run->total.expired_count, NULL,
								  run->longest);
}

/*
 * Record a worker run that failed, after its transaction was aborted: a
 * new record when none was committed yet, or the run's record marked
 * failed.  Recording can fail too (the extension dropped, subexpire_runs
 * truncated while the run went on): that is logged, and the run is still
 * counted as failed in the statistics.
 */
static void
record_failed_run(const Run *run, const char *message)
{
	MemoryContext context = CurrentMemoryContext;
	SubexpireRunResult none = {0, 0, 0};

	PG_TRY();
	{
		subexpire_begin_step("subexpire: recording a failed run");
		if (run->run_id == 0)
			(void) subexpire_record_run(run->trigger, run->as_of,
										run->started_at,
										GetCurrentTimestamp(), "failed",
										&none, message);
		else
			subexpire_update_run(run->run_id, &none, "failed", message,
								 run->longest);
		subexpire_end_step();
	}
	PG_CATCH();
	{
		ErrorData  *edata = subexpire_catch_step_error(context);

		ereport(LOG,
				(errmsg("subexpire: could not record the failure of a %s run: %s",
						run->trigger, edata->message),
				 edata->hint ? errhint("%s", edata->hint) : 0));
	}
	PG_END_TRY();
}

/*
 * A run failed.  A manual run is counted at once, with its message: its
 * transaction rolls back, record and all, and nothing else would remember
 * it.  The worker's is said in the log, with what to do, as the job's own
 * error; recorded; and counted with the rows its committed batches
 * expired.
 */
static void
fail_run(const Run *run, const ErrorData *edata)
{
	if (run->in_caller_xact)
	{
		subexpire_stats_count_run(run->started_at, GetCurrentTimestamp(), 0,
								  edata->message, -1);
		return;
	}
	ereport(LOG,
			(errmsg("subexpire: %s run failed: %s", run->trigger, edata->message),
			 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
			 edata->hint ? errhint("%s", edata->hint) : 0));
	record_failed_run(run, edata->message);
	subexpire_stats_count_run(run->started_at, GetCurrentTimestamp(),
							  run->committed, edata->message, run->longest);
}

/*
 * A worker run that failed before it could start (its target locked by
 * someone else, say): recorded and counted as a failed run.
 */
void
subexpire_run_not_started(const char *trigger, const ErrorData *edata)
{
	TimestampTz now = GetCurrentTimestamp();

	fail_run(new_run(trigger, now, now, false), edata);
}

/* ---- the worker's run, in batches ---- */

/* The run's first transaction: the guard, and its record as running. */
static void
start_batched_run(Run *run)
{
	SubexpireRunResult none = {0, 0, 0};
	SubexpireTarget *target;
	int64		run_id;

	subexpire_begin_step("subexpire: starting a run");
	target = subexpire_open_target(SUBEXPIRE_FOR_RUN);
	if (target->distributed)
		subexpire_keep_worker_connections();
	if (subexpire_max_expired_per_run > 0)
		check_limit(subexpire_count_due(target, run->as_of), run->as_of);
	subexpire_close_target(target);
	run_id = subexpire_record_run(run->trigger, run->as_of, run->started_at,
								  0, "running", &none, NULL);
	subexpire_end_step();
	run->run_id = run_id;
}

/*
 * One batch, in a transaction of its own, with the record brought up to
 * date in the same transaction.  It is timed from its start to its commit:
 * how long it held rows locked.  Returns how many rows it expired; *more
 * says whether the list has rows left.
 */
static int64
expire_one_batch(Run *run, bool *more)
{
	SubexpireRunResult added = {0, 0, 0};
	TimestampTz step_started_at = GetCurrentTimestamp();
	SubexpireTarget *target;
	int64		kept_before;

	subexpire_begin_step("subexpire: expiring a batch");
	target = subexpire_open_target(SUBEXPIRE_FOR_RUN);
	subexpire_register_run_xact();
	kept_before = subexpire_run_writes_kept(run->writes);
	subexpire_start_waking_wal_writer();
	added.expired_count = subexpire_expire_batch(target, run->as_of,
												 run->started_at,
												 subexpire_batch_size,
												 run->due_rows, run->writes,
												 more);
	subexpire_stop_waking_wal_writer();
	subexpire_close_target(target);
	added.kept_active = subexpire_run_writes_kept(run->writes) - kept_before;

	/* The record gets the longest of the batches committed so far. */
	if (added.expired_count > 0 || added.kept_active > 0)
		subexpire_update_run(run->run_id, &added, NULL, NULL, run->longest);
	subexpire_end_step();

	if (added.expired_count > 0)
		run->longest = Max(run->longest,
						   GetCurrentTimestamp() - step_started_at);
	run->total.expired_count += added.expired_count;
	run->committed = run->total.expired_count;
	return added.expired_count;
}

/*
 * A list of the due rows, in a transaction that locks none, then batches
 * from it; another list when this one could not hold them all, unless its
 * batches expired nothing (every row locked, or kept due by a trigger).
 */
static void
expire_listed_rows(Run *run)
{
	SubexpireTarget *target;
	int64		round_expired;
	bool		more;

	do
	{
		CHECK_FOR_INTERRUPTS();
		subexpire_begin_step("subexpire: finding due rows");
		target = subexpire_open_target(SUBEXPIRE_FOR_RUN);
		more = subexpire_find_due_rows(target, run->as_of, run->due_rows,
									   run->writes);
		subexpire_close_target(target);
		subexpire_end_step();

		round_expired = 0;
		while (more)
		{
			CHECK_FOR_INTERRUPTS();
			round_expired += expire_one_batch(run, &more);
		}
	} while (round_expired > 0);
}

/*
 * The run's last transaction: it comes back for the listed rows the
 * batches could not take, and closes the record.
 */
static void
finish_batched_run(Run *run)
{
	TimestampTz step_started_at = GetCurrentTimestamp();
	SubexpireTarget *target;
	SubexpireRunResult added;
	TimestampTz finished_at;

	subexpire_begin_step("subexpire: finishing the run");
	target = subexpire_open_target(SUBEXPIRE_FOR_RUN);
	added = expire_rest(run, target,
						subexpire_due_rows_all_taken(run->due_rows));
	subexpire_close_target(target);

	/*
	 * This transaction writes its own duration, so it can only count it up to
	 * here: what follows (retention, the log line, the commit) is left out.
	 * Good enough: it is short, and the record and the statistics say the
	 * same.
	 */
	if (added.expired_count > 0)
		run->longest = Max(run->longest,
						   GetCurrentTimestamp() - step_started_at);
	finished_at = finish_run(run, &added);
	subexpire_end_step();
	count_success(run, finished_at);
}

/*
 * The worker's run, in batches.  Returns NULL when it succeeded, or the
 * error that ended it, once the run has been logged, recorded and counted
 * as failed.  Every lock wait is bounded by lock_timeout, which the run
 * worker sets to subexpire.lock_wait.
 */
ErrorData *
subexpire_run_in_batches(const char *trigger)
{
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext run_context = CurrentMemoryContext;
	Run		   *run = new_run(trigger, now, now, false);
	ErrorData  *volatile error = NULL;

	PG_TRY();
	{
		start_batched_run(run);
		expire_listed_rows(run);
		finish_batched_run(run);
	}
	PG_CATCH();
	{
		subexpire_stop_waking_wal_writer();
		error = subexpire_catch_step_error(run_context);
		fail_run(run, error);
	}
	PG_END_TRY();
	return error;
}

/* ---- expire_subscriptions() ---- */

/*
 * The run of expire_subscriptions(), in the caller's transaction, on the
 * target its caller has opened.  Returns how many rows it expired.
 */
static int64
run_in_caller_xact(SubexpireTarget *target, TimestampTz as_of,
				   TimestampTz started_at)
{
	MemoryContext run_context = CurrentMemoryContext;
	Run		   *run = new_run("manual", as_of, started_at, true);

	PG_TRY();
	{
		SubexpireRunResult result;

		if (subexpire_max_expired_per_run > 0)
			check_limit(subexpire_count_due(target, as_of), as_of);
		result = expire_rest(run, target, false);
		count_success(run, finish_run(run, &result));
	}
	PG_CATCH();
	{
		MemoryContext error_context = MemoryContextSwitchTo(run_context);
		ErrorData  *edata = CopyErrorData();

		MemoryContextSwitchTo(error_context);
		fail_run(run, edata);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return run->total.expired_count;
}

/* Refuse arguments that cannot make a run, saying which and why. */
static void
check_arguments(FunctionCallInfo fcinfo, TimestampTz *as_of, bool *dry_run)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("as_of must not be NULL"),
				 errhint("Pass the cutoff time, or leave as_of out to use now().")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("dry_run must not be NULL"),
				 errhint("Pass true to count due subscriptions without expiring them, or leave dry_run out.")));
	*as_of = PG_GETARG_TIMESTAMPTZ(0);
	*dry_run = PG_GETARG_BOOL(1);

	if (TIMESTAMP_NOT_FINITE(*as_of))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("as_of must be a finite time, not %s",
						timestamptz_to_str(*as_of)),
				 errhint("Pass the cutoff time, or leave as_of out to use now().")));

	if (!*dry_run && RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot expire subscriptions on a hot standby"),
				 errdetail("A standby is read-only; the job runs on the primary."),
				 errhint("Call expire_subscriptions() on the primary, or pass dry_run => true to count due subscriptions here.")));
	if (!*dry_run && XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot expire subscriptions in a read-only transaction"),
				 errhint("Call expire_subscriptions() in a read-write transaction, or pass dry_run => true to count due subscriptions.")));
}

PG_FUNCTION_INFO_V1(expire_subscriptions);

/*
 * expire_subscriptions(as_of timestamptz, dry_run boolean)
 *		RETURNS TABLE (expired_count bigint, processed_at timestamptz)
 *
 * Expires every subscription due at as_of in the caller's transaction,
 * as the table's owner once the caller's rights are checked (see
 * subexpire_open_target()), and records the run; with dry_run, only counts
 * them.  Not STRICT, so that a NULL argument gets an error that says which
 * one, rather than an empty result that looks like "nothing was due".
 */
Datum
expire_subscriptions(PG_FUNCTION_ARGS)
{
	TimestampTz started_at = GetCurrentTimestamp();
	TimestampTz as_of;
	bool		dry_run;
	TupleDesc	tupdesc;
	Tuplestorestate *tupstore;
	SubexpireTarget *target;
	int64		expired;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	check_arguments(fcinfo, &as_of, &dry_run);
	tupstore = subexpire_result_set(fcinfo, &tupdesc);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/*
	 * A caller who may not run (no rights on the table, a target that does
	 * not exist) is refused here, before a run has started: nothing is
	 * recorded or counted, since no run took place.
	 */
	target = subexpire_open_target(dry_run ? SUBEXPIRE_FOR_COUNT : SUBEXPIRE_FOR_RUN);
	if (dry_run)
		expired = subexpire_count_due(target, as_of);
	else
		expired = run_in_caller_xact(target, as_of, started_at);
	subexpire_close_target(target);
	SPI_finish();

	/* One row: (expired_count, processed_at). */
	values[0] = Int64GetDatum(expired);
	values[1] = TimestampTzGetDatum(as_of);
	tuplestore_putvalues(tupstore, tupdesc, values, nulls);
	return (Datum) 0;
}
