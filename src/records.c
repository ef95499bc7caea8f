/*-------------------------------------------------------------------------
 *
 * records.c
 *	  Run records: one row in subexpire_runs for each run.
 *
 * Neither the caller of expire_subscriptions() nor the target table's
 * owner is meant to be able to write the run history: the record is
 * written with the rights of the role that owns subexpire_runs (see
 * src/own_table.c), in the same transaction as the run, so it commits or
 * rolls back with the rows it counts.
 *
 * IDENTIFICATION
 *	  src/records.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "extension.h"
#include "own_table.h"
#include "records.h"
#include "settings.h"

#define RUNS_TABLE "subexpire_runs"
#define RULE_RUNS_TABLE "subexpire_run_rules"

/*
 * subexpire_runs in this database, for one statement on it, and with the
 * SQL objects of 2.0, subexpire_run_rules (whose statements lock
 * subexpire_runs, which stands for the whole history).
 */
typedef struct RunsTable
{
	SubexpireOwnTable runs;
	char	   *rules_name;		/* subexpire_run_rules (2.0); NULL before */
} RunsTable;

static RunsTable
find_runs_table(void)
{
	RunsTable	history;

	history.runs = subexpire_find_own_table(RUNS_TABLE);
	history.rules_name = NULL;
	if (history.runs.sql_version >= SUBEXPIRE_SQL_2_0)
		history.rules_name = subexpire_find_own_table(RULE_RUNS_TABLE).name;
	return history;
}

/*
 * Execute a statement on the run history with the rights of its owner.
 * sql_template names "table" (subexpire_runs or subexpire_run_rules) with
 * %s.  Returns SPI's result code.
 */
static int
execute_as_owner(const RunsTable *history, const char *table,
				 LOCKMODE lockmode, const char *sql_template, int nargs,
				 Oid *types, Datum *values, const char *nulls)
{
	return subexpire_execute_on_own_table(&history->runs, lockmode,
										  "to record the run",
										  psprintf(sql_template, table),
										  nargs, types, values, nulls);
}

static int64
returned_int64(void)
{
	bool		isnull;
	Datum		value;

	value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
						  &isnull);
	return isnull ? 0 : DatumGetInt64(value);
}

/*
 * A run_id for a run whose record is written when it ends (a manual run),
 * so that its events can name it before: the next value of the identity
 * of subexpire_runs, which subexpire_record_run() then writes.
 */
int64
subexpire_reserve_run_id(void)
{
	RunsTable	history = find_runs_table();
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	int			rc;

	values[0] = CStringGetTextDatum(history.runs.name);
	rc = execute_as_owner(&history, history.runs.name, RowExclusiveLock,
						  "SELECT pg_catalog.nextval(pg_catalog.pg_get_serial_sequence($1, 'run_id'))",
						  1, types, values, NULL);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "reserving a run_id failed: %s", SPI_result_code_string(rc));
	return returned_int64();
}

/*
 * Write one run's record and return its run_id: run_id when it is not 0
 * (reserved by subexpire_reserve_run_id()), a new one otherwise.
 * finished_at and error may be 0 / NULL (a run still going, or one that
 * succeeded).  The caller is connected to SPI.
 */
int64
subexpire_record_run(int64 run_id, const char *trigger, TimestampTz as_of,
					 TimestampTz started_at, TimestampTz finished_at,
					 const char *status, const SubexpireRunResult *result,
					 const char *error)
{
	Oid			types[11] = {
		TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
		TEXTOID, INT8OID, INT8OID, TEXTOID, INT8OID, INT8OID, INT8OID
	};
	Datum		values[11];
	char		nulls[11];
	RunsTable	history = find_runs_table();
	bool		with_kept = history.runs.sql_version >= SUBEXPIRE_SQL_1_2;
	bool		with_failed = history.runs.sql_version >= SUBEXPIRE_SQL_2_0;
	int			rc;

	memset(nulls, ' ', sizeof(nulls));
	values[0] = CStringGetTextDatum(trigger);
	values[1] = TimestampTzGetDatum(as_of);
	values[2] = TimestampTzGetDatum(started_at);
	values[3] = TimestampTzGetDatum(finished_at);
	if (finished_at == 0)
		nulls[3] = 'n';
	values[4] = CStringGetTextDatum(status);
	values[5] = Int64GetDatum(result->expired_count);
	values[6] = Int64GetDatum(result->skipped_locked);
	values[7] = error ? CStringGetTextDatum(error) : (Datum) 0;
	if (error == NULL)
		nulls[7] = 'n';
	values[8] = Int64GetDatum(result->kept_active);
	values[9] = Int64GetDatum(run_id);
	values[10] = Int64GetDatum(result->skipped_failed);

	rc = execute_as_owner(&history, history.runs.name, RowExclusiveLock,
						  psprintf("INSERT INTO %%s (%s\"trigger\", as_of, started_at, finished_at, status, expired_count, skipped_locked, error%s%s) "
								   "%sVALUES (%s$1, $2, $3, $4, $5, $6, $7, $8%s%s) RETURNING run_id",
								   run_id != 0 ? "run_id, " : "",
								   with_kept ? ", kept_active" : "",
								   with_failed ? ", skipped_failed" : "",
								   run_id != 0 ? "OVERRIDING SYSTEM VALUE " : "",
								   run_id != 0 ? "$10, " : "",
								   with_kept ? ", $9" : "",
								   with_failed ? ", $11" : ""),
						  11, types, values, nulls);
	if (rc != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "recording the run failed: %s",
			 SPI_result_code_string(rc));
	return returned_int64();
}

/*
 * Add to a run's counts and, with a status other than NULL, finish it.
 * The worker calls this in the transaction of each batch, so that the
 * record always agrees with the rows committed.  longest_batch, in
 * microseconds, is written to the column of that name when it is 0 or
 * more; -1 leaves the column alone.  With a status, stopped_early says
 * whether the worker's run reached subexpire.max_run_duration.  The
 * statement names only the columns that the version of the SQL objects
 * has (longest_batch since 1.1, kept_active since 1.2, stopped_early and
 * skipped_failed since 2.0), so that it works on older ones.
 */
void
subexpire_update_run(int64 run_id, const SubexpireRunResult *added,
					 const char *status, const char *error,
					 int64 longest_batch, bool stopped_early)
{
	Oid			types[9] = {INT8OID, INT8OID, INT8OID, TEXTOID, TEXTOID, INT8OID,
	INTERVALOID, BOOLOID, INT8OID};
	Datum		values[9];
	char		nulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	RunsTable	history = find_runs_table();
	bool		with_kept = history.runs.sql_version >= SUBEXPIRE_SQL_1_2;
	bool		with_longest = longest_batch >= 0 &&
	history.runs.sql_version >= SUBEXPIRE_SQL_1_1;
	bool		with_failed = history.runs.sql_version >= SUBEXPIRE_SQL_2_0;
	bool		with_stopped = status != NULL && with_failed;
	int			rc;

	values[0] = Int64GetDatum(run_id);
	values[1] = Int64GetDatum(added->expired_count);
	values[2] = Int64GetDatum(added->skipped_locked);
	values[3] = status ? CStringGetTextDatum(status) : (Datum) 0;
	if (status == NULL)
		nulls[3] = 'n';
	values[4] = error ? CStringGetTextDatum(error) : (Datum) 0;
	if (error == NULL)
		nulls[4] = 'n';
	values[5] = Int64GetDatum(added->kept_active);
	if (with_longest)
	{
		Interval   *interval = palloc0(sizeof(Interval));

		interval->time = longest_batch;
		values[6] = IntervalPGetDatum(interval);
	}
	else
		nulls[6] = 'n';
	values[7] = BoolGetDatum(stopped_early);
	values[8] = Int64GetDatum(added->skipped_failed);

	rc = execute_as_owner(&history, history.runs.name, RowExclusiveLock,
						  psprintf("UPDATE %%s SET expired_count = expired_count OPERATOR(pg_catalog.+) $2, "
								   "skipped_locked = skipped_locked OPERATOR(pg_catalog.+) $3, "
								   "status = COALESCE($4, status), error = $5, "
								   "finished_at = CASE WHEN $4 IS NULL THEN NULL ELSE pg_catalog.clock_timestamp() END%s%s%s%s "
								   "WHERE run_id OPERATOR(pg_catalog.=) $1",
								   with_kept ? ", kept_active = kept_active OPERATOR(pg_catalog.+) $6" : "",
								   with_longest ? ", longest_batch = $7" : "",
								   with_stopped ? ", stopped_early = $8" : "",
								   with_failed ? ", skipped_failed = skipped_failed OPERATOR(pg_catalog.+) $9" : ""),
						  9, types, values, nulls);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "updating run %lld failed: %s", (long long) run_id,
			 SPI_result_code_string(rc));
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the record of run %lld is gone from %s",
						(long long) run_id, RUNS_TABLE),
				 errdetail("It was deleted while the run went on (DELETE or TRUNCATE on %s); the rows that the run's committed batches expired stay expired.",
						   RUNS_TABLE),
				 errhint("Leave %s to subexpire.history_retention while a worker run goes on.",
						 RUNS_TABLE)));
}

/*
 * How many of the last "last" worker runs that ended stopped early at
 * subexpire.max_run_duration; -1 before 2.0, whose records do not say.
 * The caller is connected to SPI.
 */
int
subexpire_runs_stopped_early(int last)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1];
	RunsTable	history = find_runs_table();
	int			rc;

	if (history.runs.sql_version < SUBEXPIRE_SQL_2_0)
		return -1;
	values[0] = Int32GetDatum(last);
	rc = execute_as_owner(&history, history.runs.name, AccessShareLock,
						  "SELECT pg_catalog.count(*) FILTER (WHERE stopped_early) FROM "
						  "(SELECT stopped_early FROM %s "
						  "WHERE \"trigger\" OPERATOR(pg_catalog.<>) 'manual' "
						  "AND status OPERATOR(pg_catalog.<>) 'running' "
						  "ORDER BY run_id DESC LIMIT $1) AS latest",
						  1, types, values, NULL);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "reading the last runs failed: %s",
			 SPI_result_code_string(rc));
	return (int) returned_int64();
}

/*
 * The due rows whose update failed in the last run that ended (manual or
 * the worker's), and in *run_id that run (0 when none ended); -1 before
 * 2.0, whose records do not say.  The caller is connected to SPI.
 */
int64
subexpire_last_run_failed_rows(int64 *run_id)
{
	RunsTable	history = find_runs_table();
	bool		isnull;
	int			rc;

	*run_id = 0;
	if (history.runs.sql_version < SUBEXPIRE_SQL_2_0)
		return -1;
	rc = execute_as_owner(&history, history.runs.name, AccessShareLock,
						  "SELECT run_id, skipped_failed FROM %s "
						  "WHERE status OPERATOR(pg_catalog.<>) 'running' "
						  "ORDER BY run_id DESC LIMIT 1",
						  0, NULL, NULL, NULL);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "reading the last run failed: %s",
			 SPI_result_code_string(rc));
	if (SPI_processed == 0)
		return 0;
	*run_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 2, &isnull));
}

/*
 * Mark the worker's runs that a crash left "running" as failed.  Only the
 * worker commits a "running" record, and it runs one run at a time, so
 * when it starts a run none of its earlier runs can still be going.
 */
int64
subexpire_fail_interrupted_runs(void)
{
	RunsTable	history;
	int			rc;

	history = find_runs_table();
	rc = execute_as_owner(&history, history.runs.name, RowExclusiveLock, "UPDATE %s SET status = 'failed', finished_at = pg_catalog.clock_timestamp(), "
						  "error = 'interrupted: the server or the worker stopped during the run; the next run expires the rest' "
						  "WHERE status OPERATOR(pg_catalog.=) 'running' "
						  "AND \"trigger\" OPERATOR(pg_catalog.<>) 'manual'",
						  0, NULL, NULL, NULL);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "marking interrupted runs failed: %s",
			 SPI_result_code_string(rc));
	return (int64) SPI_processed;
}

/*
 * When the last successful run of the worker started, or 0 when it has
 * never succeeded.
 */
TimestampTz
subexpire_last_scheduled_success(void)
{
	RunsTable	history;
	int			rc;
	bool		isnull;
	Datum		value;

	history = find_runs_table();
	rc = execute_as_owner(&history, history.runs.name, AccessShareLock, "SELECT pg_catalog.max(started_at) FROM %s "
						  "WHERE status OPERATOR(pg_catalog.=) 'succeeded' "
						  "AND \"trigger\" OPERATOR(pg_catalog.<>) 'manual'",
						  0, NULL, NULL, NULL);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "reading the last run failed: %s",
			 SPI_result_code_string(rc));
	value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
						  &isnull);
	return isnull ? 0 : DatumGetTimestampTz(value);
}

/*
 * Remove the runs older than subexpire.history_retention.  Each run calls
 * this once; the index on started_at makes it cheap.
 */
void
subexpire_prune_runs(void)
{
	Oid			types[1] = {TIMESTAMPTZOID};
	Datum		values[1];
	RunsTable	history;
	int			rc;

	if (subexpire_history_retention <= 0)
		return;
	values[0] = TimestampTzGetDatum(TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																-(int64) subexpire_history_retention * 1000));
	history = find_runs_table();
	rc = execute_as_owner(&history, history.runs.name, RowExclusiveLock,
						  "DELETE FROM %s WHERE started_at OPERATOR(pg_catalog.<) $1",
						  1, types, values, NULL);
	if (rc != SPI_OK_DELETE)
		elog(ERROR, "removing old runs failed: %s", SPI_result_code_string(rc));
}

/*
 * Write the record of one rule of run run_id: what it did so far, and its
 * error when it failed.  Nothing when the SQL objects are older than 2.0,
 * which have no such records.  The caller is connected to SPI.
 */
void
subexpire_record_rule_run(int64 run_id, const char *rule_name,
						  const char *target_table,
						  const SubexpireRunResult *result, const char *error)
{
	Oid			types[8] = {INT8OID, TEXTOID, TEXTOID, INT8OID, INT8OID,
	INT8OID, TEXTOID, INT8OID};
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	RunsTable	history = find_runs_table();
	int			rc;

	if (history.rules_name == NULL)
		return;
	values[0] = Int64GetDatum(run_id);
	values[1] = CStringGetTextDatum(rule_name);
	values[2] = CStringGetTextDatum(target_table);
	values[3] = Int64GetDatum(result->expired_count);
	values[4] = Int64GetDatum(result->skipped_locked);
	values[5] = Int64GetDatum(result->kept_active);
	values[6] = error ? CStringGetTextDatum(error) : (Datum) 0;
	if (error == NULL)
		nulls[6] = 'n';
	values[7] = Int64GetDatum(result->skipped_failed);
	rc = execute_as_owner(&history, history.rules_name, RowExclusiveLock,
						  "INSERT INTO %s (run_id, rule_name, target_table, expired_count, skipped_locked, kept_active, error, skipped_failed) "
						  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
						  8, types, values, nulls);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "recording rule \"%s\" of run %lld failed: %s",
			 rule_name, (long long) run_id, SPI_result_code_string(rc));
}

/*
 * Add to the record of one rule of a run, and with an error, mark it
 * failed.  The worker calls this in the transaction of each batch, beside
 * subexpire_update_run().  Nothing before 2.0.
 */
void
subexpire_update_rule_run(int64 run_id, const char *rule_name,
						  const SubexpireRunResult *added, const char *error)
{
	Oid			types[7] = {INT8OID, TEXTOID, INT8OID, INT8OID, INT8OID, TEXTOID,
	INT8OID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	RunsTable	history = find_runs_table();
	int			rc;

	if (history.rules_name == NULL)
		return;
	values[0] = Int64GetDatum(run_id);
	values[1] = CStringGetTextDatum(rule_name);
	values[2] = Int64GetDatum(added->expired_count);
	values[3] = Int64GetDatum(added->skipped_locked);
	values[4] = Int64GetDatum(added->kept_active);
	values[5] = error ? CStringGetTextDatum(error) : (Datum) 0;
	if (error == NULL)
		nulls[5] = 'n';
	values[6] = Int64GetDatum(added->skipped_failed);
	rc = execute_as_owner(&history, history.rules_name, RowExclusiveLock,
						  "UPDATE %s SET expired_count = expired_count OPERATOR(pg_catalog.+) $3, "
						  "skipped_locked = skipped_locked OPERATOR(pg_catalog.+) $4, "
						  "kept_active = kept_active OPERATOR(pg_catalog.+) $5, "
						  "skipped_failed = skipped_failed OPERATOR(pg_catalog.+) $7, "
						  "error = COALESCE($6, error) "
						  "WHERE run_id OPERATOR(pg_catalog.=) $1 AND rule_name OPERATOR(pg_catalog.=) $2",
						  7, types, values, nulls);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "updating rule \"%s\" of run %lld failed: %s",
			 rule_name, (long long) run_id, SPI_result_code_string(rc));
}
