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
 * Each database counts its own runs, and reads its own counters
 * (SubexpireDatabaseCounters): the job of one database is not another's.
 *
 * IDENTIFICATION
 *	  src/stats.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "utils/float.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

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
	SubexpireRuleCount *rules;	/* in TopMemoryContext */
	int			nrules;
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
 * The slot of a rule: its own, a free one, or the one whose rule ran least
 * recently.  The caller holds the lock exclusively.
 */
/*
 * The counters of the current database, or NULL when it has none.  Its
 * own slot, or else an inherited one, which it takes; with "take", a free
 * slot, or else that of the database least recently seen.  Only counting a
 * run (and a reset) takes a slot: a database that only reads its
 * statistics (monitoring in a database where the job never ran) must not
 * push another database's out.  The caller holds the lock exclusively.
 */
static SubexpireDatabaseCounters *
database_slot(bool take)
{
	SubexpireDatabaseCounters *slot = NULL;
	SubexpireDatabaseCounters *inherited = NULL;
	SubexpireDatabaseCounters *free_slot = NULL;
	SubexpireDatabaseCounters *oldest = NULL;

	for (int i = 0; i < SUBEXPIRE_DATABASE_SLOTS; i++)
	{
		SubexpireDatabaseCounters *candidate = &subexpire_shared->databases[i];

		if (candidate->dboid == MyDatabaseId && !candidate->inherited)
		{
			slot = candidate;
			break;
		}
		if (candidate->inherited)
			inherited = candidate;
		else if (!OidIsValid(candidate->dboid))
			free_slot = free_slot ? free_slot : candidate;
		else if (oldest == NULL || candidate->last_used < oldest->last_used)
			oldest = candidate;
	}
	if (slot == NULL && inherited != NULL)
	{
		slot = inherited;
		slot->inherited = false;
	}
	else if (slot == NULL && take)
	{
		slot = free_slot ? free_slot : oldest;
		memset(slot, 0, sizeof(SubexpireDatabaseCounters));
		subexpire_counters_clear(&slot->counters);
	}
	if (slot == NULL)
		return NULL;
	slot->dboid = MyDatabaseId;
	if (take)
		slot->last_used = GetCurrentTimestamp();
	return slot;
}

static SubexpireRuleCounters *
rule_slot(SubexpireDatabaseCounters *database, const char *rule_name)
{
	SubexpireRuleCounters *oldest = &database->rules[0];

	for (int i = 0; i < SUBEXPIRE_RULE_SLOTS; i++)
	{
		SubexpireRuleCounters *slot = &database->rules[i];

		if (strcmp(slot->rule_name, rule_name) == 0)
			return slot;
		if (slot->rule_name[0] == '\0')
		{
			strlcpy(slot->rule_name, rule_name, sizeof(slot->rule_name));
			return slot;
		}
		if (slot->last_run_at < oldest->last_run_at)
			oldest = slot;
	}
	memset(oldest, 0, sizeof(SubexpireRuleCounters));
	strlcpy(oldest->rule_name, rule_name, sizeof(oldest->rule_name));
	return oldest;
}

static void
count_rules(SubexpireDatabaseCounters *database, TimestampTz started_at,
			TimestampTz finished_at, const SubexpireRuleCount *rules,
			int nrules)
{
	for (int i = 0; i < nrules; i++)
	{
		SubexpireRuleCounters *slot = rule_slot(database, rules[i].rule_name);

		slot->runs_total++;
		slot->expired_total += rules[i].expired;
		slot->last_run_expired = rules[i].expired;
		slot->last_run_at = started_at;
		if (rules[i].error == NULL)
			slot->last_success_at = started_at;
		else
		{
			slot->runs_failed++;
			slot->last_failure_at = finished_at;
			strlcpy(slot->last_error, rules[i].error, sizeof(slot->last_error));
		}
	}
}

/*
 * Count a run that has ended: error is NULL for a success; expired is what
 * it committed (a failed worker run may have committed batches before it
 * failed); longest_batch, in microseconds, how long the worker's run held
 * rows locked at most, -1 when none of its transactions expired a row or
 * for a manual run (whose transaction is its caller's); rules, what each
 * of its rules did.  Without the library preloaded there is no shared
 * memory, and nothing is counted.
 */
void
subexpire_stats_count_run(TimestampTz started_at, TimestampTz finished_at,
						  int64 expired, const char *error,
						  int64 longest_batch,
						  const SubexpireRuleCount *rules, int nrules)
{
	SubexpireDatabaseCounters *database;
	SubexpireCounters *c;
	int64		duration = finished_at - started_at;
	double		seconds = (double) duration / USECS_PER_SEC;
	int			bucket = 0;

	if (subexpire_shared == NULL)
		return;

	while (bucket < lengthof(duration_bounds) && seconds > duration_bounds[bucket])
		bucket++;

	LWLockAcquire(subexpire_shared->lock, LW_EXCLUSIVE);
	database = database_slot(true);
	c = &database->counters;
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
	count_rules(database, started_at, finished_at, rules, nrules);
	LWLockRelease(subexpire_shared->lock);
}

static void
count_pending_run(XactEvent event, void *arg)
{
	const char *rolled_back = "the transaction that ran it rolled back";

	if (!pending_run.pending)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
		subexpire_stats_count_run(pending_run.started_at,
								  pending_run.finished_at,
								  pending_run.expired, NULL, -1,
								  pending_run.rules, pending_run.nrules);
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		for (int i = 0; i < pending_run.nrules; i++)
		{
			pending_run.rules[i].expired = 0;
			pending_run.rules[i].error = rolled_back;
		}
		subexpire_stats_count_run(pending_run.started_at,
								  pending_run.finished_at, 0, rolled_back,
								  -1, pending_run.rules, pending_run.nrules);
	}
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
								TimestampTz finished_at, int64 expired,
								const SubexpireRuleCount *rules, int nrules)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(count_pending_run, NULL);
		xact_callback_registered = true;
	}
	if (pending_run.pending)
		subexpire_stats_count_run(pending_run.started_at,
								  pending_run.finished_at,
								  pending_run.expired, NULL, -1,
								  pending_run.rules, pending_run.nrules);
	if (pending_run.rules != NULL)
		pfree(pending_run.rules);
	pending_run.pending = true;
	pending_run.started_at = started_at;
	pending_run.finished_at = finished_at;
	pending_run.expired = expired;
	pending_run.nrules = nrules;
	pending_run.rules = MemoryContextAlloc(TopMemoryContext,
										   Max(nrules, 1) * sizeof(SubexpireRuleCount));
	memcpy(pending_run.rules, rules, nrules * sizeof(SubexpireRuleCount));
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
	SubexpireDatabaseCounters *database;
	SubexpireCounters c;

	require_shared_memory();
	LWLockAcquire(subexpire_shared->lock, LW_EXCLUSIVE);
	database = database_slot(false);
	if (database != NULL)
		c = database->counters;
	else
		subexpire_counters_clear(&c);	/* no run counted here yet */
	LWLockRelease(subexpire_shared->lock);
	return c;
}

/*
 * A copy of the rules' counters, in "rules" (SUBEXPIRE_RULE_SLOTS of
 * them); returns how many slots are in use, first.
 */
int
subexpire_stats_read_rules(SubexpireRuleCounters *rules)
{
	SubexpireDatabaseCounters *database;
	int			n = 0;

	require_shared_memory();
	LWLockAcquire(subexpire_shared->lock, LW_EXCLUSIVE);
	database = database_slot(false);
	for (int i = 0; database != NULL && i < SUBEXPIRE_RULE_SLOTS; i++)
		if (database->rules[i].rule_name[0] != '\0')
			rules[n++] = database->rules[i];
	LWLockRelease(subexpire_shared->lock);
	return n;
}

/* Start the counters from zero (subexpire_stats_reset()). */
void
subexpire_stats_clear(void)
{
	SubexpireDatabaseCounters *database;

	require_shared_memory();
	LWLockAcquire(subexpire_shared->lock, LW_EXCLUSIVE);
	database = database_slot(true);
	subexpire_counters_clear(&database->counters);
	memset(database->rules, 0, sizeof(database->rules));
	LWLockRelease(subexpire_shared->lock);
}
