/*-------------------------------------------------------------------------
 *
 * runs.c
 *	  Run records: one row in subexpire_runs for each run.
 *
 * expire_subscriptions() runs with its caller's rights, but the caller is
 * not meant to be able to write the run history: the record is written
 * with the rights of the role that owns subexpire_runs (the role that
 * created the extension), as a security-restricted operation, the way
 * PostgreSQL's foreign-key triggers act for a table's owner.  The record
 * is written in the same transaction as the run, so it commits or rolls
 * back with the rows it counts.
 *
 * IDENTIFICATION
 *	  src/runs.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "subexpire.h"

#define RUNS_TABLE "subexpire_runs"
#define RUN_PARAM_COUNT 8

static char *insert_sql = NULL;
static SPIPlanPtr insert_plan = NULL;

/*
 * The schema the extension was created in, where its tables live.
 * (get_extension_schema() is not exported before PostgreSQL 16.)
 */
static Oid
extension_schema(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	Oid			schema = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("subexpire"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		schema = ((Form_pg_extension) GETSTRUCT(tuple))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	if (!OidIsValid(schema))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"subexpire\" is not installed in database \"%s\"",
						get_database_name(MyDatabaseId)),
				 errhint("Run CREATE EXTENSION subexpire in this database.")));
	return schema;
}

/* The plan of the INSERT into schema's subexpire_runs, prepared once. */
static SPIPlanPtr
insert_run_plan(Oid schema)
{
	static Oid	types[RUN_PARAM_COUNT] = {
		TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
		TEXTOID, INT8OID, INT8OID, TEXTOID
	};
	char	   *sql;
	SPIPlanPtr	plan;

	sql = psprintf("INSERT INTO %s (\"trigger\", as_of, started_at, finished_at, status, expired_count, skipped_locked, error) "
				   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING run_id",
				   quote_qualified_identifier(get_namespace_name(schema),
											  RUNS_TABLE));
	if (insert_plan != NULL && strcmp(insert_sql, sql) == 0)
		return insert_plan;

	plan = SPI_prepare(sql, RUN_PARAM_COUNT, types);
	if (plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep the plan of \"%s\"", sql);
	if (insert_plan != NULL)
	{
		SPI_freeplan(insert_plan);
		pfree(insert_sql);
	}
	insert_plan = plan;
	insert_sql = MemoryContextStrdup(TopMemoryContext, sql);
	return plan;
}

static Oid
relation_owner(Oid relid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * Write one run's record and return its run_id.  finished_at and error may
 * be 0 / NULL (a run still going, or one that succeeded).  The caller is
 * connected to SPI.
 */
int64
subexpire_record_run(const char *trigger, TimestampTz as_of,
					 TimestampTz started_at, TimestampTz finished_at,
					 const char *status, const SubexpireRunResult *result,
					 const char *error)
{
	Oid			schema = extension_schema();
	Oid			runs_relid = get_relname_relid(RUNS_TABLE, schema);
	SPIPlanPtr	plan;
	Datum		values[RUN_PARAM_COUNT];
	char		nulls[RUN_PARAM_COUNT];
	Oid			saved_userid;
	int			saved_sec_context;
	bool		isnull;
	int			rc;

	if (!OidIsValid(runs_relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table %s of extension subexpire is missing",
						RUNS_TABLE),
				 errhint("Recreate the extension: DROP EXTENSION subexpire; CREATE EXTENSION subexpire;")));

	plan = insert_run_plan(schema);

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

	GetUserIdAndSecContext(&saved_userid, &saved_sec_context);
	SetUserIdAndSecContext(relation_owner(runs_relid),
						   saved_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	rc = SPI_execute_plan(plan, values, nulls, false, 1);
	SetUserIdAndSecContext(saved_userid, saved_sec_context);

	if (rc != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "recording the run failed: %s",
			 SPI_result_code_string(rc));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
}
