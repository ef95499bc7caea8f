/*-------------------------------------------------------------------------
 *
 * metrics.c
 *	  The SQL functions that read the statistics: subexpire_stats,
 *	  subexpire_metrics() (Prometheus text), the duration histogram,
 *	  subexpire_rule_stats() and subexpire_stats_reset().
 *
 * Monitoring reads the other modules and nothing reads it.  A figure that
 * cannot be computed (the due count of a target that is missing, say) is
 * left out, not raised: monitoring must keep working when the job cannot.
 *
 * IDENTIFICATION
 *	  src/metrics.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "events.h"
#include "expire.h"
#include "records.h"
#include "rules.h"
#include "scheduler.h"
#include "srf.h"
#include "stats.h"
#include "subxact.h"
#include "target.h"

/*
 * Whether the last run has a longest batch: a worker run that expired rows
 * (NULL in subexpire_stats, 0 in subexpire_metrics() otherwise).
 */
static bool
has_longest_batch(const SubexpireCounters *c)
{
	return c->runs_total > 0 && c->last_run_longest_batch >= 0;
}

/*
 * The rows due now under each rule, -1 for a rule whose rows cannot be
 * counted (its table is missing, say): monitoring must keep working when
 * the job cannot.  The counts run with the rights of each table's owner
 * (see subexpire_open_target()), so that a member of pg_monitor sees them
 * without reading the subscriptions themselves, and the owner's code (a
 * domain's check on the status words) runs with no more rights than the
 * owner's.
 */
typedef struct DueNow
{
	List	   *rules;			/* of SubexpireRule */
	const SubexpireRule *rule;	/* the one being counted */
	int64		due;
} DueNow;

static void
count_due_step(void *arg)
{
	DueNow	   *due = arg;
	SubexpireTarget *target;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	target = subexpire_open_target(due->rule, SUBEXPIRE_FOR_MONITOR);
	due->due = subexpire_count_due(target, GetCurrentTimestamp());
	subexpire_close_target(target);
	SPI_finish();
}

/*
 * The enabled rules, in *rules, and what each has due now, in *dues, in
 * the same order; false when the rules cannot be read.
 */
static bool
count_due_now(List **rules, int64 **dues)
{
	DueNow		due = {NIL, NULL, 0};
	ErrorData  *error = subexpire_try_load_rules(&due.rules);
	int			i = 0;
	ListCell   *lc;

	*rules = NIL;
	*dues = NULL;
	if (error != NULL)
	{
		FreeErrorData(error);
		return false;
	}
	*dues = palloc(Max(list_length(due.rules), 1) * sizeof(int64));
	foreach(lc, due.rules)
	{
		due.rule = lfirst(lc);
		due.due = -1;
		error = subexpire_try(count_due_step, &due);
		if (error != NULL)
			FreeErrorData(error);
		(*dues)[i++] = error ? -1 : due.due;
	}
	*rules = due.rules;
	return true;
}

/*
 * The sum of the rules' due rows, or -1 when the rules cannot be read or
 * any of them cannot be counted.
 */
static int64
total_due(bool read, List *rules, const int64 *dues)
{
	int64		total = 0;

	if (!read)
		return -1;
	for (int i = 0; i < list_length(rules); i++)
	{
		if (dues[i] < 0)
			return -1;
		total += dues[i];
	}
	return total;
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
	List	   *rules;
	int64	   *dues;
	bool		rules_read;
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

	c = subexpire_stats_read();
	memset(nulls, false, sizeof(nulls));
	subexpire_scheduler_status(&worker_pid, &next_run_at);
	rules_read = count_due_now(&rules, &dues);
	due = total_due(rules_read, rules, dues);

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
	subexpire_stats_clear();
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(subexpire_duration_buckets);

Datum
subexpire_duration_buckets(PG_FUNCTION_ARGS)
{
	SubexpireCounters c = subexpire_stats_read();
	TupleDesc	tupdesc;
	Tuplestorestate *tupstore = subexpire_result_set(fcinfo, &tupdesc);
	int64		cumulative = 0;

	for (int i = 0; i < SUBEXPIRE_DURATION_BUCKETS; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		cumulative += c.duration_counts[i];
		values[0] = Float8GetDatum(subexpire_duration_bound(i));
		values[1] = Int64GetDatum(cumulative);
		tuplestore_putvalues(tupstore, tupdesc, values, nulls);
	}
	return (Datum) 0;
}

static void
append_metric(StringInfo out, const char *name, const char *type,
			  const char *help)
{
	appendStringInfo(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/*
 * The series of each rule, labelled rule="name", when subexpire_rules
 * defines the rules: the statistics of every rule that ran since the
 * reset, and what each enabled rule has due now.  (Rule names are letters,
 * digits, '_' and '-': nothing in a label value to escape.)
 */
static void
append_rule_metrics(StringInfo out, List *rules, const int64 *dues)
{
	SubexpireRuleCounters *counted = palloc(SUBEXPIRE_RULE_SLOTS *
											sizeof(SubexpireRuleCounters));
	int			n = subexpire_stats_read_rules(counted);
	int			i = 0;
	ListCell   *lc;

	append_metric(out, "subscription_expiry_rule_expired_total", "counter",
				  "Subscriptions expired under each rule since the statistics were reset.");
	for (int r = 0; r < n; r++)
		appendStringInfo(out, "subscription_expiry_rule_expired_total{rule=\"%s\"} " INT64_FORMAT "\n",
						 counted[r].rule_name, counted[r].expired_total);
	append_metric(out, "subscription_expiry_rule_runs_total", "counter",
				  "Runs of each rule, by outcome.");
	for (int r = 0; r < n; r++)
	{
		appendStringInfo(out, "subscription_expiry_rule_runs_total{rule=\"%s\",status=\"succeeded\"} " INT64_FORMAT "\n",
						 counted[r].rule_name,
						 counted[r].runs_total - counted[r].runs_failed);
		appendStringInfo(out, "subscription_expiry_rule_runs_total{rule=\"%s\",status=\"failed\"} " INT64_FORMAT "\n",
						 counted[r].rule_name, counted[r].runs_failed);
	}
	append_metric(out, "subscription_expiry_rule_last_success_timestamp_seconds", "gauge",
				  "When the last run in which each rule succeeded started, in Unix time; 0 if none.");
	for (int r = 0; r < n; r++)
		appendStringInfo(out, "subscription_expiry_rule_last_success_timestamp_seconds{rule=\"%s\"} %.3f\n",
						 counted[r].rule_name,
						 unix_seconds(counted[r].last_success_at));
	append_metric(out, "subscription_expiry_rule_due", "gauge",
				  "Subscriptions due now under each enabled rule, not yet expired.");
	foreach(lc, rules)
	{
		if (dues[i] >= 0)
			appendStringInfo(out, "subscription_expiry_rule_due{rule=\"%s\"} " INT64_FORMAT "\n",
							 ((SubexpireRule *) lfirst(lc))->name, dues[i]);
		i++;
	}
}

PG_FUNCTION_INFO_V1(subexpire_rule_stats);

/*
 * subexpire_rule_stats(): one row for each rule that ran since the
 * statistics were reset.
 */
Datum
subexpire_rule_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Tuplestorestate *tupstore = subexpire_result_set(fcinfo, &tupdesc);
	SubexpireRuleCounters *counted = palloc(SUBEXPIRE_RULE_SLOTS *
											sizeof(SubexpireRuleCounters));
	int			n = subexpire_stats_read_rules(counted);

	for (int r = 0; r < n; r++)
	{
		SubexpireRuleCounters *c = &counted[r];
		Datum		values[9];
		bool		nulls[9] = {false, false, false, false, false, false, false, false, false};

		values[0] = CStringGetTextDatum(c->rule_name);
		values[1] = Int64GetDatum(c->runs_total);
		values[2] = Int64GetDatum(c->runs_failed);
		values[3] = Int64GetDatum(c->expired_total);
		values[4] = Int64GetDatum(c->last_run_expired);
		values[5] = TimestampTzGetDatum(c->last_run_at);
		nulls[5] = (c->last_run_at == 0);
		values[6] = TimestampTzGetDatum(c->last_success_at);
		nulls[6] = (c->last_success_at == 0);
		values[7] = TimestampTzGetDatum(c->last_failure_at);
		nulls[7] = (c->last_failure_at == 0);
		values[8] = CStringGetTextDatum(c->last_error);
		nulls[8] = (c->last_error[0] == '\0');
		tuplestore_putvalues(tupstore, tupdesc, values, nulls);
	}
	return (Datum) 0;
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
	SubexpireCounters c = subexpire_stats_read();
	StringInfoData out;
	int			worker_pid;
	TimestampTz next_run_at;
	List	   *rules;
	int64	   *dues;
	bool		rules_read = count_due_now(&rules, &dues);
	int64		due = total_due(rules_read, rules, dues);
	int64		cumulative = 0;
	int64		events_pending;
	TimestampTz oldest_event;
	int64		failed_rows;
	int64		failed_run_id;

	subexpire_scheduler_status(&worker_pid, &next_run_at);
	initStringInfo(&out);

	append_metric(&out, "subscription_expiry_total", "counter",
				  "Subscriptions expired since the statistics were reset.");
	appendStringInfo(&out, "subscription_expiry_total " INT64_FORMAT "\n",
					 c.expired_total);

	append_metric(&out, "subscription_expiry_duration_seconds", "histogram",
				  "How long expiry runs took.");
	for (int i = 0; i < SUBEXPIRE_DURATION_BUCKETS; i++)
	{
		cumulative += c.duration_counts[i];
		if (i < SUBEXPIRE_DURATION_BUCKETS - 1)
			appendStringInfo(&out, "subscription_expiry_duration_seconds_bucket{le=\"%g\"} " INT64_FORMAT "\n",
							 subexpire_duration_bound(i), cumulative);
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

	if (subexpire_event_backlog(&events_pending, &oldest_event))
	{
		append_metric(&out, "subscription_expiry_events_pending", "gauge",
					  "Events in subexpire_events not taken by a consumer yet.");
		appendStringInfo(&out, "subscription_expiry_events_pending " INT64_FORMAT "\n",
						 events_pending);
		append_metric(&out, "subscription_expiry_events_oldest_age_seconds", "gauge",
					  "How long the oldest event not taken yet has waited; 0 if none.");
		appendStringInfo(&out, "subscription_expiry_events_oldest_age_seconds %.3f\n",
						 oldest_event == 0 ? 0.0 :
						 Max(GetCurrentTimestamp() - oldest_event, 0) / 1000000.0);
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	failed_rows = subexpire_last_run_failed_rows(&failed_run_id);
	SPI_finish();
	if (failed_rows >= 0)
	{
		append_metric(&out, "subscription_expiry_failed_rows", "gauge",
					  "Due rows whose update failed in the last run that ended, left as they were (subexpire_row_errors).");
		appendStringInfo(&out, "subscription_expiry_failed_rows " INT64_FORMAT "\n",
						 failed_rows);
	}

	if (rules_read && !subexpire_rules_are_the_settings(rules))
		append_rule_metrics(&out, rules, dues);

	PG_RETURN_TEXT_P(cstring_to_text_with_len(out.data, out.len));
}
