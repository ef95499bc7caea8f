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
#include "rules.h"
#include "run.h"
#include "run_xacts.h"
#include "settings.h"
#include "srf.h"
#include "statement.h"
#include "stats.h"
#include "subxact.h"
#include "target.h"
#include "walwriter.h"

/* One rule of a run (src/rules.c), and what it did. */
typedef struct RunRule
{
	SubexpireRule *rule;
	SubexpireRunResult result;
	SubexpireRunWrites *writes;
	SubexpireDueRows *due_rows; /* worker: its lists of due rows */
	char	   *error;			/* worker: why the rule failed; NULL: it did
								 * not */
} RunRule;

/* A run, from its start to its count. */
typedef struct Run
{
	const char *trigger;		/* 'manual', 'schedule' or 'catch-up' */
	TimestampTz as_of;			/* the cutoff */
	TimestampTz started_at;		/* also the time set in the updated-at column */
	bool		in_caller_xact; /* a manual run: one transaction, the caller's */
	int64		run_id;			/* worker: 0 until its record is committed;
								 * manual: reserved when it starts, its record
								 * written when it ends */
	List	   *rules;			/* of RunRule, in the order they run */
	SubexpireRunResult total;
	int64		committed;		/* worker: expired by committed batches */
	int64		longest;		/* worker: the longest batch that expired
								 * rows, in microseconds; -1: none */
	bool		stopped_early;	/* worker: reached subexpire.max_run_duration */
	MemoryContext context;		/* lives as long as the run */
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

/* The rules the run makes, each with its own writes and lists. */
static void
set_rules(Run *run, List *rules)
{
	MemoryContext old = MemoryContextSwitchTo(run->context);
	ListCell   *lc;

	foreach(lc, rules)
	{
		RunRule    *rr = palloc0(sizeof(RunRule));

		rr->rule = lfirst(lc);
		rr->writes = subexpire_run_writes_create(run->context, run->started_at);
		if (!run->in_caller_xact)
			rr->due_rows = subexpire_due_rows_create(run->context);
		run->rules = lappend(run->rules, rr);
	}
	MemoryContextSwitchTo(old);
}

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
	run->context = CurrentMemoryContext;
	return run;
}

/*
 * Refuse a run that would expire more rows than the guard allows: the
 * rule's own (max_expired_per_run of subexpire_rules) when "rule" is not
 * NULL, or subexpire.max_expired_per_run, which bounds the whole run.
 */
static void
check_limit(int64 count, TimestampTz as_of, const SubexpireRule *rule)
{
	int64		limit = rule ? rule->max_expired_per_run : subexpire_max_expired_per_run;

	if (limit > 0 && count > limit)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 rule
				 ? errmsg("refusing to expire %lld subscriptions under rule \"%s\", more than its max_expired_per_run (%lld)",
						  (long long) count, rule->name, (long long) limit)
				 : errmsg("refusing to expire %lld subscriptions, more than subexpire.max_expired_per_run (%lld)",
						  (long long) count, (long long) limit),
				 errdetail("Nothing was changed.  %lld subscriptions are due at %s.",
						   (long long) count, timestamptz_to_str(as_of)),
				 rule
				 ? errhint("Check the clock and the expiry data.  If the number is right, raise max_expired_per_run of rule \"%s\" in subexpire_rules, or set it to 0.",
						   rule->name)
				 : errhint("Check the clock and the expiry data.  If the number is right, raise subexpire.max_expired_per_run, or set it to 0 for this run.")));
}

/*
 * The rows a rule has due at a cutoff: for the guards of a run, or for a
 * dry run, counted as the caller.
 */
typedef struct RuleDue
{
	const SubexpireRule *rule;
	SubexpireAccess access;
	TimestampTz as_of;
	int64		due;
} RuleDue;

static void
count_rule_due(void *arg)
{
	RuleDue    *count = arg;
	SubexpireTarget *target = subexpire_open_target(count->rule,
													count->access);

	count->due = subexpire_count_due(target, count->as_of);
	subexpire_close_target(target);
}

/*
 * Expire the due rows of one rule that are left, in the current
 * transaction: all of them in a manual run; in the worker's last step of
 * the rule, those its batches could not take, unless they took them all
 * ("skip": why, see TableDueRows in src/expire.c).  Returns what this step
 * did.
 */
static SubexpireRunResult
expire_rest(Run *run, RunRule *rr, SubexpireTarget *target, bool skip)
{
	SubexpireRunResult added = {0};
	int64		kept_before = subexpire_run_writes_kept(rr->writes);
	int64		failed_before = subexpire_run_writes_failed(rr->writes);

	subexpire_register_run_xact();
	if (!skip)
		added = subexpire_expire_due(target, run->as_of, run->started_at,
									 rr->writes);
	added.kept_active = subexpire_run_writes_kept(rr->writes) - kept_before;
	added.skipped_failed = subexpire_run_writes_failed(rr->writes) - failed_before;
	subexpire_warn_kept_rows(target, rr->writes);
	return added;
}

static void
add_result(SubexpireRunResult *to, const SubexpireRunResult *added)
{
	to->expired_count += added->expired_count;
	to->skipped_locked += added->skipped_locked;
	to->kept_active += added->kept_active;
	to->skipped_failed += added->skipped_failed;
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
			(errmsg("subexpire: %s run %lld expired %lld subscriptions due at %s in %.3f s%s%s%s%s%s",
					run->trigger, (long long) run->run_id,
					(long long) result->expired_count,
					timestamptz_to_str(run->as_of),
					(double) (finished_at - run->started_at) / USECS_PER_SEC,
					list_length(run->rules) > 1
					? psprintf(" under %d rules", list_length(run->rules))
					: "",
					result->skipped_locked > 0
					? psprintf(", and left %lld locked by other transactions for the next run",
							   (long long) result->skipped_locked)
					: "",
					result->kept_active > 0
					? psprintf("; %lld more stayed due, their status kept by a trigger",
							   (long long) result->kept_active)
					: "",
					result->skipped_failed > 0
					? psprintf(result->skipped_failed == 1
							   ? "; %lld failed and was left as it was"
							   : "; %lld failed and were left as they were",
							   (long long) result->skipped_failed)
					: "",
					run->stopped_early
					? psprintf("; it stopped early, at subexpire.max_run_duration (%d s), and left the rest for the next run",
							   subexpire_max_run_duration)
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
 * One WARNING for the due rows of the whole run whose update failed, if
 * any: how many, and the first error.
 */
static void
warn_failed_rows(const Run *run)
{
	const RunRule *first = NULL;
	ListCell   *lc;

	if (run->total.skipped_failed == 0)
		return;
	foreach(lc, run->rules)
	{
		const RunRule *rr = lfirst(lc);

		if (subexpire_run_writes_first_error(rr->writes) != NULL)
		{
			first = rr;
			break;
		}
	}
	ereport(WARNING,
			(errmsg_plural("%lld due subscription could not be expired and was left as it was",
						   "%lld due subscriptions could not be expired and were left as they were",
						   (unsigned long) run->total.skipped_failed,
						   (long long) run->total.skipped_failed),
			 first
			 ? errdetail("Updating a row of %s under rule \"%s\" failed: %s",
						 first->rule->target_table, first->rule->name,
						 subexpire_run_writes_first_error(first->writes))
			 : 0,
			 errhint("subexpire_row_errors has each row's key and error for run %lld; the next run tries them again.",
					 (long long) run->run_id)));
}

/*
 * How many of a worker run's rules failed, and in *first the first of
 * them.
 */
static int
failed_rules(const Run *run, const RunRule **first)
{
	int			failed = 0;
	ListCell   *lc;

	*first = NULL;
	foreach(lc, run->rules)
	{
		const RunRule *rr = lfirst(lc);

		if (rr->error == NULL)
			continue;
		if (failed++ == 0)
			*first = rr;
	}
	return failed;
}

/* The error a worker run failed with, when one of its rules failed. */
static char *
run_failure_message(const Run *run)
{
	const RunRule *first;

	if (failed_rules(run, &first) == 0)
		return NULL;
	if (list_length(run->rules) == 1)
		return first->error;
	return psprintf("rule \"%s\" failed: %s", first->rule->name, first->error);
}

/*
 * The run has expired its rows; in its last transaction, before the
 * commit: write or close its record, prune old records and announce it.
 * A manual run writes its rules' records here; the worker's were written
 * as its rules went.  Returns when it finished.
 */
static TimestampTz
finish_run(Run *run)
{
	TimestampTz finished_at;
	SubexpireRunResult none = {0};
	char	   *failure = run_failure_message(run);
	ListCell   *lc;

	/*
	 * Rows that became due while a manual run went on count too; a worker's
	 * committed batches cannot be taken back.
	 */
	if (run->in_caller_xact)
		check_limit(run->total.expired_count, run->as_of, NULL);

	finished_at = GetCurrentTimestamp();
	if (run->in_caller_xact)
	{
		(void) subexpire_record_run(run->run_id, run->trigger, run->as_of,
									run->started_at, finished_at,
									"succeeded", &run->total, NULL);
		foreach(lc, run->rules)
		{
			RunRule    *rr = lfirst(lc);

			subexpire_record_rule_run(run->run_id, rr->rule->name,
									  rr->rule->target_table, &rr->result, NULL);
		}
	}
	else
		subexpire_update_run(run->run_id, &none,
							 failure ? "failed" : "succeeded", failure,
							 run->longest, run->stopped_early);
	subexpire_prune_runs();
	warn_failed_rows(run);
	announce_run(run, finished_at);
	return finished_at;
}

/*
 * Each rule's count and failure, for the statistics.  run_error, when the
 * whole run failed, is the failure of every rule that has none of its own;
 * a manual run that failed expired nothing.
 */
static SubexpireRuleCount *
rule_counts(const Run *run, const char *run_error)
{
	SubexpireRuleCount *counts = palloc0(Max(list_length(run->rules), 1) *
										 sizeof(SubexpireRuleCount));
	int			i = 0;
	ListCell   *lc;

	foreach(lc, run->rules)
	{
		RunRule    *rr = lfirst(lc);

		strlcpy(counts[i].rule_name, rr->rule->name, sizeof(counts[i].rule_name));
		counts[i].expired = (run_error && run->in_caller_xact) ? 0 : rr->result.expired_count;
		counts[i].error = rr->error ? rr->error : run_error;
		i++;
	}
	return counts;
}

/*
 * Count a run that ended, in the statistics: a manual run that succeeded
 * when its caller's transaction ends, the worker's now that its last
 * transaction has committed.
 */
static void
count_run(const Run *run, TimestampTz finished_at)
{
	SubexpireRuleCount *counts = rule_counts(run, NULL);

	if (run->in_caller_xact)
		subexpire_stats_count_at_commit(run->started_at, finished_at,
										run->total.expired_count,
										counts, list_length(run->rules));
	else
		subexpire_stats_count_run(run->started_at, finished_at,
								  run->total.expired_count,
								  run_failure_message(run), run->longest,
								  counts, list_length(run->rules));
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
	SubexpireRunResult none = {0};

	PG_TRY();
	{
		subexpire_begin_step("subexpire: recording a failed run");
		if (run->run_id == 0)
			(void) subexpire_record_run(0, run->trigger, run->as_of,
										run->started_at,
										GetCurrentTimestamp(), "failed",
										&none, message);
		else
			subexpire_update_run(run->run_id, &none, "failed", message,
								 run->longest, run->stopped_early);
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
	SubexpireRuleCount *counts = rule_counts(run, edata->message);

	if (run->in_caller_xact)
	{
		subexpire_stats_count_run(run->started_at, GetCurrentTimestamp(), 0,
								  edata->message, -1, counts,
								  list_length(run->rules));
		return;
	}
	ereport(LOG,
			(errmsg("subexpire: %s run failed: %s", run->trigger, edata->message),
			 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
			 edata->hint ? errhint("%s", edata->hint) : 0));
	record_failed_run(run, edata->message);
	subexpire_stats_count_run(run->started_at, GetCurrentTimestamp(),
							  run->committed, edata->message, run->longest,
							  counts, list_length(run->rules));
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

/*
 * The run's first transaction: the rules to run, the guard on the whole
 * run, and its record as running, with a record for each rule.  A rule
 * that cannot be counted here (its table gone, say) fails when its turn
 * comes, on its own.
 */
static void
start_batched_run(Run *run)
{
	SubexpireRunResult none = {0};
	int64		due = 0;
	ListCell   *lc;

	subexpire_begin_step("subexpire: starting a run");
	{
		MemoryContext old = MemoryContextSwitchTo(run->context);

		set_rules(run, subexpire_load_rules(NULL));
		MemoryContextSwitchTo(old);
	}
	if (subexpire_max_expired_per_run > 0)
	{
		foreach(lc, run->rules)
		{
			RuleDue		count = {((RunRule *) lfirst(lc))->rule, SUBEXPIRE_FOR_RUN,
			run->as_of, 0};
			ErrorData  *error = subexpire_try(count_rule_due, &count);

			/* A rule that cannot be counted fails on its own, in its turn. */
			if (error == NULL)
				due += count.due;
			else
				FreeErrorData(error);
		}
		check_limit(due, run->as_of, NULL);
	}
	run->run_id = subexpire_record_run(0, run->trigger, run->as_of,
									   run->started_at, 0, "running", &none,
									   NULL);
	foreach(lc, run->rules)
	{
		RunRule    *rr = lfirst(lc);

		subexpire_run_writes_set_run_id(rr->writes, run->run_id);
		subexpire_record_rule_run(run->run_id, rr->rule->name,
								  rr->rule->target_table, &none, NULL);
	}
	subexpire_end_step();
}

/*
 * One batch of a rule, in a transaction of its own, with the run's record
 * and the rule's brought up to date in the same transaction.  It is timed
 * from its start to its commit: how long it held rows locked.  Returns how
 * many rows it expired; *more says whether the list has rows left.
 */
static int64
expire_one_batch(Run *run, RunRule *rr, bool *more)
{
	SubexpireRunResult added = {0};
	TimestampTz step_started_at = GetCurrentTimestamp();
	SubexpireTarget *target;
	int64		kept_before;
	int64		failed_before;

	subexpire_begin_step("subexpire: expiring a batch");
	target = subexpire_open_target(rr->rule, SUBEXPIRE_FOR_RUN);
	subexpire_register_run_xact();
	kept_before = subexpire_run_writes_kept(rr->writes);
	failed_before = subexpire_run_writes_failed(rr->writes);
	subexpire_start_waking_wal_writer();
	added.expired_count = subexpire_expire_batch(target, run->as_of,
												 run->started_at,
												 subexpire_batch_size,
												 rr->due_rows, rr->writes,
												 more);
	subexpire_stop_waking_wal_writer();
	subexpire_close_target(target);
	added.kept_active = subexpire_run_writes_kept(rr->writes) - kept_before;
	added.skipped_failed = subexpire_run_writes_failed(rr->writes) - failed_before;

	/* The record gets the longest of the batches committed so far. */
	if (added.expired_count > 0 || added.kept_active > 0 ||
		added.skipped_failed > 0)
	{
		subexpire_update_run(run->run_id, &added, NULL, NULL, run->longest,
							 false);
		subexpire_update_rule_run(run->run_id, rr->rule->name, &added, NULL);
	}
	subexpire_end_step();

	if (added.expired_count > 0)
		run->longest = Max(run->longest,
						   GetCurrentTimestamp() - step_started_at);
	add_result(&rr->result, &added);
	add_result(&run->total, &added);
	run->committed = run->total.expired_count;
	return added.expired_count;
}

/*
 * Has the worker's run reached subexpire.max_run_duration?  Then it starts
 * no new batch: it says so in its record, and the next run expires the
 * rest.  Asked before each batch, so that a run stops early only when
 * rows are left; its rules after that still list their due rows, but
 * expire none.
 */
static bool
out_of_time(Run *run)
{
	if (subexpire_max_run_duration > 0 &&
		GetCurrentTimestamp() >=
		TimestampTzPlusMilliseconds(run->started_at,
									(int64) subexpire_max_run_duration * 1000))
		run->stopped_early = true;
	return run->stopped_early;
}

/*
 * A list of a rule's due rows, in a transaction that locks none, then
 * batches from it; another list when this one could not hold them all,
 * unless its batches expired nothing (every row locked, or kept due by a
 * trigger).  The rule's own guard is checked in its first list's
 * transaction, before any of its rows is expired.  Returns before a batch
 * when the run is out of time (out_of_time()).
 */
static void
expire_listed_rows(Run *run, RunRule *rr)
{
	SubexpireTarget *target;
	int64		round_expired;
	bool		first = true;
	bool		more;

	do
	{
		CHECK_FOR_INTERRUPTS();
		subexpire_begin_step("subexpire: finding due rows");
		target = subexpire_open_target(rr->rule, SUBEXPIRE_FOR_RUN);
		if (first)
		{
			if (target->distributed)
				subexpire_keep_worker_connections();
			if (rr->rule->max_expired_per_run > 0)
				check_limit(subexpire_count_due(target, run->as_of),
							run->as_of, rr->rule);
			first = false;
		}
		more = subexpire_find_due_rows(target, run->as_of, rr->due_rows,
									   rr->writes);
		subexpire_close_target(target);
		subexpire_end_step();

		round_expired = 0;
		while (more)
		{
			CHECK_FOR_INTERRUPTS();
			if (out_of_time(run))
				return;
			round_expired += expire_one_batch(run, rr, &more);
		}
	} while (round_expired > 0);
}

/*
 * A rule's last transaction: it comes back for the listed rows the
 * batches could not take, and brings the records up to date; for the
 * run's last rule, it also finishes the run (finish_run()), so that the
 * last rows and the record that says the run is over commit together.
 * Returns whether it finished the run.
 */
static bool
finish_batched_rule(Run *run, RunRule *rr, bool last_rule)
{
	TimestampTz step_started_at = GetCurrentTimestamp();
	TimestampTz finished_at = 0;
	SubexpireTarget *target;
	SubexpireRunResult added;

	subexpire_begin_step("subexpire: finishing a rule");
	target = subexpire_open_target(rr->rule, SUBEXPIRE_FOR_RUN);
	added = expire_rest(run, rr, target,
						run->stopped_early ||
						subexpire_due_rows_all_taken(rr->due_rows));
	subexpire_close_target(target);

	/*
	 * This transaction writes its own duration, so it can only count it up to
	 * here: what follows (the records, the commit) is left out.  Good enough:
	 * it is short, and the record and the statistics say the same.
	 */
	if (added.expired_count > 0)
		run->longest = Max(run->longest,
						   GetCurrentTimestamp() - step_started_at);
	subexpire_update_run(run->run_id, &added, NULL, NULL, run->longest,
						 false);
	subexpire_update_rule_run(run->run_id, rr->rule->name, &added, NULL);
	add_result(&rr->result, &added);
	add_result(&run->total, &added);
	if (last_rule)
		finished_at = finish_run(run);
	subexpire_end_step();
	run->committed = run->total.expired_count;
	if (last_rule)
		count_run(run, finished_at);
	return last_rule;
}

/*
 * A rule of the worker's run failed, after its transaction was aborted:
 * said in the log, with the rule's name, and written in its record, in a
 * transaction of its own.  The run goes on with the next rule; its record
 * says failed at the end.
 */
static void
fail_batched_rule(Run *run, RunRule *rr, ErrorData *edata)
{
	SubexpireRunResult none = {0};

	rr->error = MemoryContextStrdup(run->context, edata->message);
	/* A run of one rule says it as the run's failure (fail_run()). */
	if (list_length(run->rules) > 1)
		ereport(LOG,
				(errmsg("subexpire: rule \"%s\" of %s run %lld failed: %s",
						rr->rule->name, run->trigger, (long long) run->run_id,
						edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
				 edata->hint ? errhint("%s", edata->hint) : 0));
	subexpire_begin_step("subexpire: recording a failed rule");
	subexpire_update_rule_run(run->run_id, rr->rule->name, &none, rr->error);
	subexpire_end_step();
}

/*
 * The worker's run, in batches, one rule after another: each commits its
 * own batches, and a rule that fails leaves the others to run.  Returns
 * NULL when every rule succeeded, or the first error that ended a rule or
 * the run, once the run has been logged, recorded and counted.  Every lock
 * wait is bounded by lock_timeout, which the run worker sets to
 * subexpire.lock_wait.
 */
ErrorData *
subexpire_run_in_batches(const char *trigger)
{
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext run_context = CurrentMemoryContext;
	Run		   *run = new_run(trigger, now, now, false);
	ErrorData  *volatile error = NULL;
	volatile bool finished = false;

	PG_TRY();
	{
		const RunRule *first;
		ListCell   *lc;

		start_batched_run(run);
		foreach(lc, run->rules)
		{
			RunRule    *rr = lfirst(lc);
			bool		last_rule = (lnext(run->rules, lc) == NULL);

			PG_TRY();
			{
				expire_listed_rows(run, rr);
				finished = finish_batched_rule(run, rr, last_rule);
			}
			PG_CATCH();
			{
				ErrorData  *rule_error;

				subexpire_stop_waking_wal_writer();
				rule_error = subexpire_catch_step_error(run_context);
				fail_batched_rule(run, rr, rule_error);
				if (error == NULL)
					error = rule_error;
			}
			PG_END_TRY();
		}
		/* Unless its last rule finished it: */
		if (!finished && run->rules != NIL &&
			failed_rules(run, &first) == list_length(run->rules))
		{
			/* Nothing succeeded: the run failed, as a run of 1.x did. */
			fail_run(run, error);
		}
		else if (!finished)
		{
			subexpire_begin_step("subexpire: finishing the run");
			count_run(run, finish_run(run));
			subexpire_end_step();
		}
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
 * The run of expire_subscriptions(), in the caller's transaction: its
 * rules one after another, so that a row one rule moves is seen by the
 * rules after it.  Every lock wait of the run is bounded by
 * subexpire.lock_wait: those of its rules by their targets (see
 * subexpire_open_target()), its record's here.  Returns how many rows it
 * expired.
 */
static int64
run_in_caller_xact(List *rules, TimestampTz as_of, TimestampTz started_at)
{
	MemoryContext run_context = CurrentMemoryContext;
	Run		   *run = new_run("manual", as_of, started_at, true);

	set_rules(run, rules);
	PG_TRY();
	{
		int64		due = 0;
		int			guc_level;
		ListCell   *lc;

		guc_level = subexpire_bound_lock_waits();
		run->run_id = subexpire_reserve_run_id();
		AtEOXact_GUC(true, guc_level);
		foreach(lc, run->rules)
			subexpire_run_writes_set_run_id(((RunRule *) lfirst(lc))->writes,
											run->run_id);

		foreach(lc, run->rules)
		{
			RunRule    *rr = lfirst(lc);
			RuleDue		count = {rr->rule, SUBEXPIRE_FOR_RUN, as_of, 0};

			if (rr->rule->max_expired_per_run > 0 ||
				subexpire_max_expired_per_run > 0)
			{
				count_rule_due(&count);
				check_limit(count.due, as_of, rr->rule);
				due += count.due;
			}
		}
		check_limit(due, as_of, NULL);

		foreach(lc, run->rules)
		{
			RunRule    *rr = lfirst(lc);
			SubexpireTarget *target = subexpire_open_target(rr->rule,
															SUBEXPIRE_FOR_RUN);

			rr->result = expire_rest(run, rr, target, false);
			subexpire_close_target(target);
			add_result(&run->total, &rr->result);
		}
		guc_level = subexpire_bound_lock_waits();
		count_run(run, finish_run(run));
		AtEOXact_GUC(true, guc_level);
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

/*
 * The rules of a run: every enabled rule, or the one named.  A caller who
 * may not run every one of them (no rights on a table, a table that does
 * not exist) is refused here, before the run has started: nothing is
 * recorded or counted, since no run took place.
 */
static List *
rules_of_run(const char *rule_name)
{
	List	   *rules = subexpire_load_rules(rule_name);
	ListCell   *lc;

	foreach(lc, rules)
		subexpire_close_target(subexpire_open_target(lfirst(lc),
													 SUBEXPIRE_FOR_RUN));
	return rules;
}

PG_FUNCTION_INFO_V1(expire_subscriptions);

/*
 * expire_subscriptions(as_of timestamptz, dry_run boolean, rule_name text)
 *		RETURNS TABLE (expired_count bigint, processed_at timestamptz)
 *
 * Expires every subscription due at as_of under every enabled rule, or the
 * one named, in the caller's transaction, as each table's owner once the
 * caller's rights are checked (see subexpire_open_target()), and records
 * the run; with dry_run, only counts them.  The SQL objects of 1.x call it
 * with two arguments.  Not STRICT, so that a NULL argument gets an error
 * that says which one, rather than an empty result that looks like
 * "nothing was due".
 */
Datum
expire_subscriptions(PG_FUNCTION_ARGS)
{
	TimestampTz started_at = GetCurrentTimestamp();
	TimestampTz as_of;
	bool		dry_run;
	char	   *rule_name = NULL;
	TupleDesc	tupdesc;
	Tuplestorestate *tupstore;
	int64		expired = 0;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	check_arguments(fcinfo, &as_of, &dry_run);
	if (PG_NARGS() > 2 && !PG_ARGISNULL(2))
		rule_name = text_to_cstring(PG_GETARG_TEXT_PP(2));
	tupstore = subexpire_result_set(fcinfo, &tupdesc);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (dry_run)
	{
		ListCell   *lc;

		foreach(lc, subexpire_load_rules(rule_name))
		{
			RuleDue		count = {lfirst(lc), SUBEXPIRE_FOR_COUNT, as_of, 0};

			count_rule_due(&count);
			expired += count.due;
		}
	}
	else
		expired = run_in_caller_xact(rules_of_run(rule_name), as_of,
									 started_at);
	SPI_finish();

	/* One row: (expired_count, processed_at). */
	values[0] = Int64GetDatum(expired);
	values[1] = TimestampTzGetDatum(as_of);
	tuplestore_putvalues(tupstore, tupdesc, values, nulls);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(subexpire_due);

/*
 * subexpire_due(as_of timestamptz)
 *		RETURNS TABLE (rule_name text, target_table text, due_count bigint)
 *
 * What each enabled rule would expire at as_of, counted as the caller,
 * changing nothing (so it works on a standby).  Rules run one after
 * another, so a row that one rule would move into the next rule's status
 * is counted by the first only.
 */
Datum
subexpire_due(PG_FUNCTION_ARGS)
{
	TimestampTz as_of;
	TupleDesc	tupdesc;
	Tuplestorestate *tupstore;
	ListCell   *lc;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("as_of must not be NULL"),
				 errhint("Pass the cutoff time, or leave as_of out to use now().")));
	as_of = PG_GETARG_TIMESTAMPTZ(0);
	if (TIMESTAMP_NOT_FINITE(as_of))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("as_of must be a finite time, not %s",
						timestamptz_to_str(as_of)),
				 errhint("Pass the cutoff time, or leave as_of out to use now().")));
	tupstore = subexpire_result_set(fcinfo, &tupdesc);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	foreach(lc, subexpire_load_rules(NULL))
	{
		SubexpireRule *rule = lfirst(lc);
		SubexpireTarget *target = subexpire_open_target(rule, SUBEXPIRE_FOR_COUNT);
		Datum		row[3];
		bool		row_nulls[3] = {false, false, false};

		row[0] = CStringGetTextDatum(rule->name);
		row[1] = CStringGetTextDatum(target->qualified_name);
		row[2] = Int64GetDatum(subexpire_count_due(target, as_of));
		subexpire_close_target(target);
		tuplestore_putvalues(tupstore, tupdesc, row, row_nulls);
	}
	SPI_finish();
	return (Datum) 0;
}
