/*-------------------------------------------------------------------------
 *
 * health.c
 *	  subexpire_health(): the checks that application-side expiry jobs are
 *	  told to set up as alerts, with a status and what to do.
 *
 *	  last_run          the last run failed: critical
 *	  overdue           no successful run when the worker's schedule had
 *	                    one due: critical
 *	  no_expiry         no subscription expired for longer than
 *	                    subexpire.alert_no_expiry_after: warning
 *	  excessive_expiry  the last run expired more than
 *	                    subexpire.alert_max_expired: warning
 *	  index             no index serves the due-row search, so every run
 *	                    scans the table: warning
 *	  event_backlog     the oldest event not taken from subexpire_events
 *	                    is older than subexpire.alert_event_backlog_after:
 *	                    warning
 *	  stopped_early     the last STOPPED_EARLY_RUNS worker runs each
 *	                    stopped at subexpire.max_run_duration with due
 *	                    rows left: warning
 *	  failed_rows       the last run left due rows whose update failed
 *	                    (subexpire_row_errors): warning
 *
 * IDENTIFICATION
 *	  src/health.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "events.h"
#include "next_run.h"
#include "records.h"
#include "rules.h"
#include "settings.h"
#include "srf.h"
#include "stats.h"
#include "subxact.h"
#include "target.h"

/* How late a scheduled run may be before "overdue" says so. */
#define OVERDUE_GRACE_SECONDS (15 * 60)

/* How many worker runs in a row stop early before "stopped_early" says so. */
#define STOPPED_EARLY_RUNS 3

typedef struct HealthRows
{
	Tuplestorestate *tupstore;
	TupleDesc	tupdesc;
} HealthRows;

static void
add_check(HealthRows *rows, const char *name, const char *status,
		  const char *detail)
{
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(status);
	values[2] = CStringGetTextDatum(detail);
	tuplestore_putvalues(rows->tupstore, rows->tupdesc, values, nulls);
}

/*
 * Does an index of relid serve "status = x AND expires <= y": one whose
 * first column is the expiry column (a partial index on active rows, say),
 * or whose first two columns are the status and expiry columns?
 */
static bool
has_due_row_index(Oid relid, AttrNumber status_attnum,
				  AttrNumber expires_attnum)
{
	Relation	rel = table_open(relid, AccessShareLock);
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	bool		found = false;

	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);
		Form_pg_index form = index->rd_index;

		if (form->indisvalid && form->indnkeyatts >= 1 &&
			index->rd_rel->relam == BTREE_AM_OID &&
			(form->indkey.values[0] == expires_attnum ||
			 (form->indnkeyatts >= 2 &&
			  form->indkey.values[0] == status_attnum &&
			  form->indkey.values[1] == expires_attnum)))
			found = true;
		index_close(index, AccessShareLock);
		if (found)
			break;
	}
	list_free(indexes);
	table_close(rel, AccessShareLock);
	return found;
}

/* The index check of one rule: what it found, or its error. */
typedef struct IndexCheck
{
	const SubexpireRule *rule;
	bool		found;
	char	   *table;
	char	   *create;			/* the CREATE INDEX to suggest */
} IndexCheck;

static void
index_step(void *arg)
{
	IndexCheck *check = arg;
	SubexpireTarget *target;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	target = subexpire_open_target(check->rule, SUBEXPIRE_FOR_MONITOR);
	check->found = has_due_row_index(target->relid, target->status_attnum,
									 target->expires_attnum);
	check->table = target->qualified_name;
	check->create = psprintf("CREATE INDEX ON %s (%s, %s)",
							 target->qualified_name, target->status_column,
							 target->expires_column);
	subexpire_close_target(target);
	SPI_finish();
}

static char *
error_text(const ErrorData *error)
{
	return psprintf("%s%s%s", error->message, error->hint ? "; " : "",
					error->hint ? error->hint : "");
}

/*
 * target_settings: with rules in subexpire_rules, the subexpire.* target
 * settings are not used; one that was changed from its default was meant
 * for something, and is not doing it.
 */
static void
target_settings_check(HealthRows *rows)
{
	char	   *changed = NULL;
	int			rc;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute("SELECT pg_catalog.string_agg(name, ', ' ORDER BY name) FROM pg_catalog.pg_settings "
					 "WHERE name OPERATOR(pg_catalog.=) ANY ('{subexpire.target_table, subexpire.status_column, "
					 "subexpire.expires_column, subexpire.updated_column, subexpire.active_status, "
					 "subexpire.expired_status, subexpire.grace_period}') "
					 "AND source OPERATOR(pg_catalog.<>) 'default'", true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "reading the target settings failed: %s",
			 SPI_result_code_string(rc));
	changed = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (changed != NULL)
		add_check(rows, "target_settings", "warning",
				  psprintf("subexpire_rules defines the rules, so these settings, changed from their defaults, are not used: %s; reset them, or write the rule they describe into subexpire_rules",
						   changed));
	else
		add_check(rows, "target_settings", "ok",
				  "subexpire_rules defines the rules; the target settings are at their defaults");
	SPI_finish();
}

/*
 * The index check, on each rule's table, and the rules check: can every
 * enabled rule run (its table, columns and values still as it needs)?  A
 * rule that cannot be resolved is reported, not raised.  With the one rule
 * of the settings, one row "index" says all, as in 1.x; with rules in
 * subexpire_rules, "index" sums them up, and "rules" and "target_settings"
 * follow.
 */
static void
check_rules(HealthRows *rows)
{
	List	   *rules;
	ErrorData  *error = subexpire_try_load_rules(&rules);
	StringInfoData missing;
	StringInfoData broken;
	int			nbroken = 0;
	ListCell   *lc;

	if (error != NULL)
	{
		add_check(rows, "index", "critical",
				  psprintf("the rules cannot be read: %s", error_text(error)));
		return;
	}
	if (rules == NIL)
	{
		add_check(rows, "index", "ok", "no rule is enabled: nothing to search");
		add_check(rows, "rules", "warning",
				  "subexpire_rules has rules, but none is enabled, so runs expire nothing; enable one: UPDATE subexpire_rules SET enabled = true WHERE rule_name = ...");
		target_settings_check(rows);
		return;
	}
	if (subexpire_rules_are_the_settings(rules))
	{
		IndexCheck	check = {linitial(rules), false, NULL, NULL};

		error = subexpire_try(index_step, &check);
		if (error != NULL)
			add_check(rows, "index", "critical",
					  psprintf("the target cannot be checked: %s", error_text(error)));
		else if (check.found)
			add_check(rows, "index", "ok",
					  psprintf("an index on %s serves the due-row search",
							   check.table));
		else
			add_check(rows, "index", "warning",
					  psprintf("no index serves the due-row search, so every run scans %s; create one: %s",
							   check.table, check.create));
		return;
	}

	initStringInfo(&missing);
	initStringInfo(&broken);
	foreach(lc, rules)
	{
		IndexCheck	check = {lfirst(lc), false, NULL, NULL};

		error = subexpire_try(index_step, &check);
		if (error != NULL)
			appendStringInfo(&broken, "%srule \"%s\": %s",
							 nbroken++ > 0 ? "; " : "", check.rule->name,
							 error->message);
		else if (!check.found)
			appendStringInfo(&missing, "%srule \"%s\" on %s: %s",
							 missing.len > 0 ? "; " : "", check.rule->name,
							 check.table, check.create);
	}
	if (missing.len > 0)
		add_check(rows, "index", "warning",
				  psprintf("no index serves the due-row search of every rule, so their runs scan the table; create one: %s",
						   missing.data));
	else
		add_check(rows, "index", "ok",
				  psprintf("an index serves the due-row search of every rule that can run (%d)",
						   list_length(rules) - nbroken));
	if (nbroken > 0)
		add_check(rows, "rules", "critical",
				  psprintf("%d of %d enabled rules cannot run: %s; fix the table, or the rule in subexpire_rules",
						   nbroken, list_length(rules), broken.data));
	else
		add_check(rows, "rules", "ok",
				  psprintf("every enabled rule (%d) can run", list_length(rules)));
	target_settings_check(rows);
}

/* last_run: the last run failed. */
static void
last_run_check(HealthRows *rows, const SubexpireCounters *c)
{
	if (c->last_failure_at != 0 && c->last_failure_at >= c->last_success_at)
		add_check(rows, "last_run", "critical",
				  psprintf("the last run failed at %s: %s; fix the cause, then run SELECT expire_subscriptions() or wait for the next scheduled run",
						   timestamptz_to_str(c->last_failure_at), c->last_error));
	else if (c->last_run_started_at == 0)
		add_check(rows, "last_run", "ok", "no run since the statistics were reset");
	else
		add_check(rows, "last_run", "ok",
				  psprintf("the last run succeeded at %s",
						   timestamptz_to_str(c->last_success_at)));
}

/* overdue: no successful run when the schedule had one due. */
static void
overdue_check(HealthRows *rows, const SubexpireCounters *c, TimestampTz now)
{
	TimestampTz since = c->last_success_at;
	TimestampTz due_at;

	if (!subexpire_enabled)
	{
		add_check(rows, "overdue", "ok",
				  "subexpire.enabled is off: the worker does not run the schedule, so nothing is checked");
		return;
	}
	if (!subexpire_database_listed(get_database_name(MyDatabaseId)))
	{
		add_check(rows, "overdue", "ok",
				  "subexpire.database does not list this database: the worker does not run the schedule here, so nothing is checked");
		return;
	}

	/* With no success yet, the clock starts at the last reset. */
	if (since == 0)
		since = c->stats_reset;
	due_at = subexpire_next_scheduled_run(since);
	if (due_at != DT_NOEND &&
		TimestampTzPlusMilliseconds(due_at, OVERDUE_GRACE_SECONDS * 1000) < now)
		add_check(rows, "overdue", "critical",
				  psprintf("no successful run since %s, although subexpire.schedule had one due at %s; check that subexpire is in shared_preload_libraries and the worker runs (subexpire_stats.worker_pid), and the server log",
						   since == 0 ? "the start" : timestamptz_to_str(since),
						   timestamptz_to_str(due_at)));
	else
		add_check(rows, "overdue", "ok", "no scheduled run is overdue");
}

/* no_expiry: nothing expired for longer than the setting allows. */
static void
no_expiry_check(HealthRows *rows, const SubexpireCounters *c, TimestampTz now)
{
	if (subexpire_alert_no_expiry_after > 0 && c->last_expiry_at != 0 &&
		TimestampTzPlusMilliseconds(c->last_expiry_at,
									(int64) subexpire_alert_no_expiry_after * 1000) < now)
		add_check(rows, "no_expiry", "warning",
				  psprintf("no subscription expired since %s, longer than subexpire.alert_no_expiry_after; check the job's settings and the expiry data",
						   timestamptz_to_str(c->last_expiry_at)));
	else
		add_check(rows, "no_expiry", "ok",
				  c->last_expiry_at == 0 ? "no subscription expired yet since the statistics were reset"
				  : psprintf("the last expiry was at %s", timestamptz_to_str(c->last_expiry_at)));
}

/* excessive_expiry: the last run expired more than the setting allows. */
static void
excessive_expiry_check(HealthRows *rows, const SubexpireCounters *c)
{
	if (subexpire_alert_max_expired > 0 && c->last_run_expired > subexpire_alert_max_expired)
		add_check(rows, "excessive_expiry", "warning",
				  psprintf("the last run expired " INT64_FORMAT " subscriptions, more than subexpire.alert_max_expired (%d); check the clock and the expiry data",
						   c->last_run_expired, subexpire_alert_max_expired));
	else
		add_check(rows, "excessive_expiry", "ok",
				  subexpire_alert_max_expired > 0 ? "the last run stayed under subexpire.alert_max_expired"
				  : "subexpire.alert_max_expired is 0: not checked");
}

/* event_backlog: events wait longer than the setting allows. */
static void
event_backlog_check(HealthRows *rows, TimestampTz now)
{
	int64		pending;
	TimestampTz oldest;

	if (!subexpire_event_backlog(&pending, &oldest))
		return;					/* no outbox before 2.0 */
	if (pending > 0 && subexpire_alert_event_backlog_after > 0 &&
		TimestampTzPlusMilliseconds(oldest,
									(int64) subexpire_alert_event_backlog_after * 1000) < now)
		add_check(rows, "event_backlog", "warning",
				  psprintf(INT64_FORMAT " events wait in subexpire_events, the oldest since %s, longer than subexpire.alert_event_backlog_after; check that their consumer runs (it takes them with subexpire_take_events())",
						   pending, timestamptz_to_str(oldest)));
	else if (pending > 0)
		add_check(rows, "event_backlog", "ok",
				  psprintf(INT64_FORMAT " events wait in subexpire_events, the oldest since %s",
						   pending, timestamptz_to_str(oldest)));
	else
		add_check(rows, "event_backlog", "ok", "no event waits in subexpire_events");
}

/*
 * stopped_early: the worker's runs keep reaching subexpire.max_run_duration,
 * so that due rows wait from one run to the next.  (A run stops early only
 * when it has a batch or a rule left to start.)
 */
static void
stopped_early_check(HealthRows *rows)
{
	int			stopped;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	stopped = subexpire_runs_stopped_early(STOPPED_EARLY_RUNS);
	SPI_finish();
	if (stopped < 0)
		return;					/* the records of 1.x do not say */
	if (stopped == STOPPED_EARLY_RUNS)
		add_check(rows, "stopped_early", "warning",
				  psprintf("the last %d runs of the worker each stopped at subexpire.max_run_duration (%d s) and left due rows for the next run; raise subexpire.max_run_duration, or run SELECT expire_subscriptions() to catch up",
						   STOPPED_EARLY_RUNS, subexpire_max_run_duration));
	else if (subexpire_max_run_duration == 0)
		add_check(rows, "stopped_early", "ok",
				  "subexpire.max_run_duration is 0: worker runs are not stopped early");
	else
		add_check(rows, "stopped_early", "ok",
				  psprintf("%d of the last %d runs of the worker stopped at subexpire.max_run_duration",
						   stopped, STOPPED_EARLY_RUNS));
}

/*
 * failed_rows: the last run that ended left due rows as they were because
 * their update failed (a trigger raised, a constraint refused the new
 * row).  Each run tries them again, so the warning lasts until the cause
 * is fixed.
 */
static void
failed_rows_check(HealthRows *rows)
{
	int64		failed;
	int64		run_id;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	failed = subexpire_last_run_failed_rows(&run_id);
	SPI_finish();
	if (failed < 0)
		return;					/* the records of 1.x do not say */
	if (failed > 0)
		add_check(rows, "failed_rows", "warning",
				  psprintf("run %lld left " INT64_FORMAT " due %s as %s because %s update failed; "
						   "SELECT * FROM subexpire_row_errors WHERE run_id = %lld names each row and its error: fix the rows or what refused them (a trigger, a constraint), and the next run expires them",
						   (long long) run_id, failed,
						   failed == 1 ? "row" : "rows",
						   failed == 1 ? "it was" : "they were",
						   failed == 1 ? "its" : "their",
						   (long long) run_id));
	else if (run_id == 0)
		add_check(rows, "failed_rows", "ok", "no run has ended yet");
	else
		add_check(rows, "failed_rows", "ok",
				  psprintf("every due row of run %lld could be updated",
						   (long long) run_id));
}

PG_FUNCTION_INFO_V1(subexpire_health);

Datum
subexpire_health(PG_FUNCTION_ARGS)
{
	SubexpireCounters c = subexpire_stats_read();
	HealthRows	rows;
	TimestampTz now = GetCurrentTimestamp();

	rows.tupstore = subexpire_result_set(fcinfo, &rows.tupdesc);

	last_run_check(&rows, &c);
	overdue_check(&rows, &c, now);
	no_expiry_check(&rows, &c, now);
	excessive_expiry_check(&rows, &c);
	check_rules(&rows);
	event_backlog_check(&rows, now);
	stopped_early_check(&rows);
	failed_rows_check(&rows);
	return (Datum) 0;
}
