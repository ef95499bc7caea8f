/*-------------------------------------------------------------------------
 *
 * failed_rows.c
 *	  Due rows whose update failed: which errors are about a row, the rows
 *	  a run left as they were, and their records in subexpire_row_errors.
 *
 * A due row whose update raises an error (a trigger's RAISE, a check
 * constraint or a foreign key that refuses the new row) must not stop the
 * expiry of every other row.  The statements that meet such an error are
 * retried in smaller pieces, each in a subtransaction, down to single rows
 * (src/expire.c, src/distributed.c); a single row that still fails is
 * left as it was and recorded here: its key and error in
 * subexpire_row_errors, in the (sub)transaction that expires the others,
 * so that the record commits with them, and in the run's count.  The next
 * run tries it again.
 *
 * Which errors are about a row, by SQLSTATE class: every class but those
 * that say something about the statement, the session or the server, which
 * still fail the run as before:
 *
 *	08 connection exception				40 transaction rollback (serialization
 *	0A feature not supported			   failure, deadlock)
 *	24 invalid cursor state				42 syntax error or access rule violation
 *	25 invalid transaction state		53 insufficient resources
 *	26 invalid SQL statement name		55 object not in prerequisite state
 *	34 invalid cursor name				   (lock not available)
 *	3B savepoint exception				57 operator intervention (cancel,
 *	3D invalid catalog name				   shutdown, statement_timeout)
 *	3F invalid schema name				58 system error
 *	72 snapshot failure					F0 configuration file error
 *	HV foreign data wrapper error		XX internal error
 *
 * So a data exception (22), an integrity constraint violation (23), a
 * cardinality violation (21), a triggered data change violation (27), a
 * routine's exception (2F, 38, 39), a triggered action's (09), WITH CHECK
 * OPTION (44), a program limit such as an index row too large (54), a
 * PL/pgSQL RAISE (P0) and any code a trigger makes up are about a row.
 *
 * IDENTIFICATION
 *	  src/failed_rows.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "extension.h"
#include "failed_rows.h"
#include "own_table.h"

#define ROW_ERRORS_TABLE "subexpire_row_errors"

/* A row of a local table, by the table and its ctid. */
typedef struct FailedTid
{
	Oid			relid;
	ItemPointerData tid;
} FailedTid;

struct SubexpireFailedRows
{
	MemoryContext context;		/* lives as long as the run */
	int64		count;			/* rows recorded */
	char	   *first_error;
	HTAB	   *tids;			/* FailedTid: rows of local tables, which the
								 * run's later statements leave out */
	List	   *keys;			/* row_key of rows of a distributed table,
								 * which are met again (see distributed.c):
								 * each is recorded once */
};

/* The SQLSTATE classes of errors that are not about a row (see above). */
static const char *const statement_error_classes[] = {
	"08", "0A", "24", "25", "26", "34", "3B", "3D", "3F", "40", "42", "53",
	"55", "57", "58", "72", "F0", "HV", "XX"
};

bool
subexpire_is_row_error(int sqlerrcode)
{
	const char *code = unpack_sql_state(sqlerrcode);

	for (int i = 0; i < lengthof(statement_error_classes); i++)
		if (strncmp(code, statement_error_classes[i], 2) == 0)
			return false;
	return true;
}

SubexpireFailedRows *
subexpire_failed_rows_create(MemoryContext context)
{
	SubexpireFailedRows *failed = MemoryContextAllocZero(context,
														 sizeof(SubexpireFailedRows));

	failed->context = context;
	return failed;
}

int64
subexpire_failed_rows_count(const SubexpireFailedRows *failed)
{
	return failed->count;
}

/* The error of the first row recorded; NULL when none failed. */
const char *
subexpire_failed_rows_first_error(const SubexpireFailedRows *failed)
{
	return failed->first_error;
}

/* Has the row at tid of local table relid failed in this run? */
bool
subexpire_failed_row_known(const SubexpireFailedRows *failed, Oid relid,
						   ItemPointer tid)
{
	FailedTid	key;

	if (failed->tids == NULL)
		return false;
	memset(&key, 0, sizeof(key));
	key.relid = relid;
	key.tid = *tid;
	return hash_search(failed->tids, &key, HASH_FIND, NULL) != NULL;
}

/*
 * Note the row at tid of relid as failed.  False when it was already.
 */
static bool
add_tid(SubexpireFailedRows *failed, Oid relid, ItemPointer tid)
{
	FailedTid	key;
	bool		found;

	if (failed->tids == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(FailedTid);
		ctl.entrysize = sizeof(FailedTid);
		ctl.hcxt = failed->context;
		failed->tids = hash_create("subexpire failed rows", 64, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	memset(&key, 0, sizeof(key));
	key.relid = relid;
	key.tid = *tid;
	(void) hash_search(failed->tids, &key, HASH_ENTER, &found);
	return !found;
}

/* Note the row of a distributed table named by row_key.  False when known. */
static bool
add_key(SubexpireFailedRows *failed, const char *row_key)
{
	ListCell   *lc;
	MemoryContext old;

	foreach(lc, failed->keys)
		if (strcmp(lfirst(lc), row_key) == 0)
		return false;
	old = MemoryContextSwitchTo(failed->context);
	failed->keys = lappend(failed->keys, pstrdup(row_key));
	MemoryContextSwitchTo(old);
	return true;
}

/*
 * The row_key of a failed row: its primary key, as an event names it;
 * without one, what finds it: its distribution column and expiry on a
 * distributed table, its ctid (and its table, when it is a partition or a
 * child of the target) otherwise.
 */
static char *
row_key_expression(SubexpireTarget *target, Oid relid)
{
	StringInfoData expr;

	(void) subexpire_key_columns(target);
	initStringInfo(&expr);
	appendStringInfoString(&expr, "pg_catalog.jsonb_build_object(");
	if (target->nkeys > 0)
		for (int k = 0; k < target->nkeys; k++)
			appendStringInfo(&expr, "%s%s, %s", k > 0 ? ", " : "",
							 quote_literal_cstr(target->key_names[k]),
							 quote_identifier(target->key_names[k]));
	else if (target->distributed)
		appendStringInfo(&expr, "%s, %s, %s, %s",
						 quote_literal_cstr(get_attname(target->relid,
														target->key_attnum,
														false)),
						 target->key_column,
						 quote_literal_cstr(target->rule->expires_column),
						 target->expires_column);
	else if (relid != target->relid)
		appendStringInfoString(&expr, "'table', CAST(CAST(tableoid AS pg_catalog.regclass) AS pg_catalog.text), "
							   "'ctid', CAST(ctid AS pg_catalog.text)");
	else
		appendStringInfoString(&expr, "'ctid', CAST(ctid AS pg_catalog.text)");
	appendStringInfoString(&expr, ")::pg_catalog.text");
	return expr.data;
}

/* One row in subexpire_row_errors, as its owner. */
static void
write_row_error(const SubexpireOwnTable *table, int64 run_id,
				const char *rule_name, const char *row_key, const char *error)
{
	Oid			types[4] = {INT8OID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];
	int			rc;

	values[0] = Int64GetDatum(run_id);
	values[1] = CStringGetTextDatum(rule_name);
	values[2] = CStringGetTextDatum(row_key);
	values[3] = CStringGetTextDatum(error);
	rc = subexpire_execute_on_own_table(table, RowExclusiveLock,
										"to record a row that failed",
										psprintf("INSERT INTO %s (run_id, rule_name, row_key, error) "
												 "VALUES ($1, $2, CAST($3 AS pg_catalog.jsonb), $4)",
												 table->name),
										4, types, values, NULL);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "recording a row that failed: %s",
			 SPI_result_code_string(rc));
}

/*
 * A statement on the due rows "from_where" (a FROM list and WHERE clause,
 * with the statement's parameters) failed with "error" on every one of
 * them, in a subtransaction that was rolled back: note each row as failed,
 * and record it under run run_id, in the current (sub)transaction.  A row
 * of a local table is named by relid and tid, and is found by from_where
 * alone; rows of a distributed table (tid NULL) are as many as from_where
 * finds.  Rows already noted in this run are not recorded again.  The
 * caller is connected to SPI, acting as the target's owner.  Returns how
 * many rows it recorded.
 */
int64
subexpire_record_failed_rows(SubexpireFailedRows *failed,
							 SubexpireTarget *target, int64 run_id, Oid relid,
							 ItemPointer tid, const char *from_where,
							 int nargs, Oid *types, Datum *values,
							 const char *nulls, const char *error)
{
	SubexpireOwnTable table;
	char	   *version;
	bool		with_table = subexpire_sql_version(&version) >= SUBEXPIRE_SQL_2_0;
	SPITupleTable *rows;
	uint64		nrows;
	int64		recorded = 0;
	int			rc;

	rc = SPI_execute_with_args(psprintf("SELECT %s FROM %s",
										row_key_expression(target, relid),
										from_where),
							   nargs, types, values, nulls, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "finding the key of a row that failed: %s",
			 SPI_result_code_string(rc));
	rows = SPI_tuptable;
	nrows = SPI_processed;
	if (with_table)
		table = subexpire_find_own_table(ROW_ERRORS_TABLE);
	for (uint64 i = 0; i < nrows; i++)
	{
		char	   *row_key = SPI_getvalue(rows->vals[i], rows->tupdesc, 1);

		if (tid != NULL ? !add_tid(failed, relid, tid) : !add_key(failed, row_key))
			continue;
		if (with_table)
			write_row_error(&table, run_id, target->rule->name, row_key, error);
		if (failed->first_error == NULL)
			failed->first_error = MemoryContextStrdup(failed->context, error);
		failed->count++;
		recorded++;
	}
	SPI_freetuptable(rows);
	return recorded;
}
