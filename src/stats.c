/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Statistics of the runs, in shared memory: counting a run, reading
 *	  the counters.
 *
 * Every run is counted, whoever started it.  A run that fails is counted
 * as failed at once, with its time and message, although its transaction
 * rolls back; a manual run that succeeded is counted when its caller's
 * transaction commits (and as failed if that transaction rolls back
 * instead), so that the figures agree with the rows that stay expired.
 *
 * IDENTIFICATION
 *	  src/stats.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/float.h"

#include "stats.h"

/* Upper bounds, in seconds, of the run-duration histogram's buckets. */
static const double duration_bounds[] = {
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600
};

StaticAssertDecl(lengthof(duration_bounds) + 1 == SUBEXPIRE_DURATION_BUCKETS,
				 "one bucket per bound, and +Inf");

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

/* The upper bound of a bucket of the histogram, +Inf for the last. */
double
subexpire_duration_bound(int bucket)
{
	if (bucket < lengthof(duration_bounds))
		return duration_bounds[bucket];
	return get_float8_infinity();
}

/*
 * Count a run that has ended: error is NULL for a success; expired is what
 * it committed (a failed worker run may have committed batches before it
 * failed); longest_batch, in microseconds, how long the worker's run held
 * rows locked at most, -1 when none of its transactions expired a row or
 * for a manual run (whose transaction is its caller's).  Without the
 * library preloaded there is no shared memory, and nothing is counted.
 */
void
subexpire_stats_count_run(TimestampTz started_at, TimestampTz finished_at,
						  int64 expired, const char *error,
						  int64 longest_batch)
{
	SubexpireCounters *c;
	int64		duration = finished_at - started_at;
	double		seconds = (double) duration / USECS_PER_SEC;
	int			bucket = 0;

	if (subexpire_shared == NULL)
		return;

	while (bucket < lengthof(duration_bounds) && seconds > duration_bounds[bucket])
		bucket++;

	LWLockAcquire(subexpire_shared->lock, LW_EXCLUSIVE);
	c = &subexpire_shared->counters;
	c->runs_total++;
	c->last_run_started_at = started_at;
	c->last_run_duration = duration;
	c->duration_counts[bucket]++;
	c->duration_sum += seconds;
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
	LWLockRelease(subexpire_shared->lock);
}

static void
count_pending_run(XactEvent event, void *arg)
{
	if (!pending_run.pending)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
		subexpire_stats_count_run(pending_run.started_at,
								  pending_run.finished_at,
								  pending_run.expired, NULL, -1);
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		subexpire_stats_count_run(pending_run.started_at,
								  pending_run.finished_at, 0,
								  "the transaction that ran it rolled back",
								  -1);
	else
		return;
	pending_run.pending = false;
}

/*
 * A manual run succeeded in the current transaction: count it when the
 * transaction ends.  (A second run in the same transaction counts the
 * first now.)
 */
void
subexpire_stats_count_at_commit(TimestampTz started_at,
								TimestampTz finished_at, int64 expired)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(count_pending_run, NULL);
		xact_callback_registered = true;
	}
	if (pending_run.pending)
		subexpire_stats_count_run(pending_run.started_at,
								  pending_run.finished_at,
								  pending_run.expired, NULL, -1);
	pending_run.pending = true;
	pending_run.started_at = started_at;
	pending_run.finished_at = finished_at;
	pending_run.expired = expired;
}

static void
require_shared_memory(void)
{
	if (subexpire_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("subexpire statistics are not available"),
				 errdetail("They live in shared memory, which the library gets only when it is preloaded."),
				 errhint("Add subexpire to shared_preload_libraries and restart the server.")));
}

/* A copy of the counters; an error when the library is not preloaded. */
SubexpireCounters
subexpire_stats_read(void)
{
	SubexpireCounters c;

	require_shared_memory();
	LWLockAcquire(subexpire_shared->lock, LW_SHARED);
	c = subexpire_shared->counters;
	LWLockRelease(subexpire_shared->lock);
	return c;
}

/* Start the counters from zero (subexpire_stats_reset()). */
void
subexpire_stats_clear(void)
{
	require_shared_memory();
	LWLockAcquire(subexpire_shared->lock, LW_EXCLUSIVE);
	subexpire_counters_clear(&subexpire_shared->counters);
	LWLockRelease(subexpire_shared->lock);
}
