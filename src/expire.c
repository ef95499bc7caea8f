/*-------------------------------------------------------------------------
 *
 * expire.c
 *	  The expiry core: the statements that find and expire due rows.
 *
 * A row is due at cutoff T when its status is the active word and its
 * expiry is at or before T minus the grace period.  The bound is computed
 * once per run and compared with the bare column, so that an index on
 * (status, expires_at) turns the search into a range scan, and the UPDATE
 * stays a plain one that Citus can push down.
 *
 * A probe for one due row comes first: a run with nothing due ends after
 * one index descent.  The common case, with no due row locked by anyone
 * else, is then exactly one plain set-based UPDATE.  It runs in a
 * subtransaction with lock_timeout set to subexpire.lock_wait, so that a row held locked by an application
 * transaction for longer than that cannot stall the run: the UPDATE gives
 * up, its work is undone, and the run falls back to the locked-rows path.
 * That path expires every row it can lock at once (FOR NO KEY UPDATE SKIP
 * LOCKED), comes back for the rows that were locked one by one while the
 * lock_wait budget lasts, takes once more whatever has been released
 * meanwhile, and counts what is still due and locked as skipped, to be
 * recorded in the run's record and left for the next run; rows locked by
 * another expiry run in progress are that run's, and not counted.  For the
 * worker, subexpire_find_due_rows() lists the due rows in page order, and
 * subexpire_expire_batch() expires the next batch of them that nobody
 * holds locked in each transaction, locking them a piece at a time.
 *
 * Every statement re-checks the due condition on the row version it
 * changes (PostgreSQL's EvalPlanQual does so for an UPDATE that waited for
 * a row), so a renewal committed while a run is in progress is never
 * overwritten.
 *
 * A row counts as expired when the UPDATE gave it the expired word.
 * Without BEFORE ROW triggers on the target's tables, that is every row
 * the UPDATE processed; with them, the statements return whether each row
 * got it, and the rows a trigger kept due are counted apart.  Once a run
 * has written rows, its later searches leave out the row versions it wrote
 * (SubexpireRunWrites), so that nothing can make it come back for the same
 * rows without end.
 *
 * IDENTIFICATION
 *	  src/expire.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/sysattr.h"
#include "access/table.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_class.h"
#include "catalog/partition.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "expire.h"
#include "run_xacts.h"
#include "settings.h"
#include "subxact.h"
#include "target.h"

/*
 * Parameters shared by every statement: $1 the expired word, $2 the active
 * word, $3 the bound on the expiry column, $4 the run's time for the
 * updated-at column, $5 a row's ctid (only in the one-row UPDATE), $6 the
 * ctids of a batch's rows (only in the worker's batches) and $7 the
 * transactions of this run that wrote rows (see SubexpireRunWrites).
 */
#define PARAM_COUNT 7

/*
 * What a run has written so far: the (sub)transactions in which its
 * statements updated rows, and how many of those rows stayed due because
 * a BEFORE trigger kept their status.  The statements that come back for
 * due rows after the run has written some (another list of the worker,
 * the locked-rows path's later passes, the worker's last step) leave out
 * the row versions that those transactions wrote (their xmin), so that a
 * run considers each due row at most once: neither a trigger that keeps
 * or puts back the status, nor anything else, can make it come back for
 * the same rows without end.
 */
struct SubexpireRunWrites
{
	MemoryContext context;		/* lives as long as the run */
	int64		kept;			/* rows updated that stayed due */
	int			nxids;
	int			maxxids;
	TransactionId *xids;
};

typedef struct StatementParams
{
	Oid			types[PARAM_COUNT];
	Datum		values[PARAM_COUNT];
	char		nulls[PARAM_COUNT];
	bool		exclude_written;	/* $7 is not empty */
} StatementParams;

/*
 * A statement prepared once per backend and kept until the text or the
 * parameter types it was prepared for change, that is, until the
 * configuration or the target's column types do.
 */
typedef struct CachedStatement
{
	char	   *sql;
	Oid			types[PARAM_COUNT];
	SPIPlanPtr	plan;
} CachedStatement;

static CachedStatement expire_statement;
static CachedStatement count_statement;
static CachedStatement probe_statement;

/* $7: the transactions of the run that wrote rows. */
static void
set_writes_param(StatementParams *params, const SubexpireRunWrites *writes)
{
	int			n = writes ? writes->nxids : 0;
	Datum	   *xids = palloc(n * sizeof(Datum));

	for (int i = 0; i < n; i++)
		xids[i] = TransactionIdGetDatum(writes->xids[i]);
	params->values[6] = PointerGetDatum(construct_array(xids, n, XIDOID,
														sizeof(TransactionId),
														true, TYPALIGN_INT));
	params->nulls[6] = ' ';
	params->exclude_written = (n > 0);
}

SubexpireRunWrites *
subexpire_run_writes_create(MemoryContext context)
{
	SubexpireRunWrites *writes = MemoryContextAllocZero(context,
														sizeof(SubexpireRunWrites));

	writes->context = context;
	return writes;
}

int64
subexpire_run_writes_kept(const SubexpireRunWrites *writes)
{
	return writes->kept;
}

/*
 * The statement just run in the current (sub)transaction updated rows,
 * "kept" of which stayed due: remember the transaction, whose row versions
 * the run's later searches leave out, and refresh $7 when it is new (a
 * batch's pieces are all one transaction).
 */
static void
note_writes(SubexpireRunWrites *writes, StatementParams *params, uint64 kept)
{
	TransactionId xid = GetCurrentTransactionId();

	writes->kept += kept;
	if (writes->nxids == 0 || writes->xids[writes->nxids - 1] != xid)
	{
		if (writes->nxids == writes->maxxids)
		{
			writes->maxxids = Max(16, writes->maxxids * 2);
			if (writes->xids == NULL)
				writes->xids = MemoryContextAlloc(writes->context,
												  writes->maxxids * sizeof(TransactionId));
			else
				writes->xids = repalloc(writes->xids,
										writes->maxxids * sizeof(TransactionId));
		}
		writes->xids[writes->nxids++] = xid;
		set_writes_param(params, writes);
	}
}

static void
set_params(StatementParams *params, SubexpireTarget *target,
		   TimestampTz as_of, TimestampTz run_time,
		   const SubexpireRunWrites *writes)
{
	TimestampTz bound = as_of;

	if (subexpire_grace_period > 0)
	{
		bound = as_of - (TimestampTz) subexpire_grace_period * USECS_PER_SEC;
		if (!IS_VALID_TIMESTAMP(bound))
			ereport(ERROR,
					(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
					 errmsg("as_of minus subexpire.grace_period is out of range"),
					 errhint("Pass a later as_of or set a shorter subexpire.grace_period.")));
	}

	params->types[0] = target->status_type;
	params->types[1] = target->status_type;
	params->types[2] = target->expires_type;
	params->types[3] = OidIsValid(target->updated_type) ? target->updated_type : TIMESTAMPTZOID;
	params->types[4] = TIDOID;
	params->types[5] = TIDARRAYOID;
	params->types[6] = XIDARRAYOID;

	params->values[0] = target->expired_word;
	params->values[1] = target->active_word;
	params->values[2] = subexpire_timestamp_for_column(bound, target->expires_type,
													   subexpire_grace_period > 0
													   ? "as_of minus subexpire.grace_period"
													   : "as_of",
													   target->expires_column);
	params->values[3] = subexpire_timestamp_for_column(run_time, params->types[3],
													   "the run's time",
													   target->updated_column
													   ? target->updated_column
													   : "(none)");
	params->values[4] = (Datum) 0;
	params->values[5] = (Datum) 0;

	memset(params->nulls, ' ', PARAM_COUNT);
	params->nulls[4] = 'n';
	params->nulls[5] = 'n';
	set_writes_param(params, writes);
}

/*
 * "status = $2 AND expires_at <= $3", operators pinned to pg_catalog; with
 * exclude_written, leaving out the row versions that this run wrote ($7).
 * The first statement of a run has written nothing, so that the common
 * path stays one plain UPDATE.
 */
static void
append_due_condition(StringInfo sql, SubexpireTarget *target,
					 bool exclude_written)
{
	appendStringInfo(sql, "%s OPERATOR(pg_catalog.=) $2 AND %s OPERATOR(pg_catalog.<=) $3",
					 target->status_column, target->expires_column);
	if (exclude_written)
		appendStringInfoString(sql, " AND NOT (xmin OPERATOR(pg_catalog.=) ANY ($7))");
}

/*
 * The RETURNING list of the UPDATEs: when the target counts by outcome,
 * whether each row got the expired word; when subexpire.log_expired asks
 * for one line per expired row, its key (the primary key's columns, or the
 * ctid of a table that has none).  Without either, none: the rows the
 * UPDATE processed are the rows it expired.
 */
static void
append_returning(StringInfo sql, SubexpireTarget *target)
{
	if (target->count_outcome)
		appendStringInfo(sql, " RETURNING %s OPERATOR(pg_catalog.=) $1%s%s",
						 target->status_column,
						 subexpire_log_expired ? ", " : "",
						 subexpire_log_expired ? subexpire_key_columns(target) : "");
	else if (subexpire_log_expired)
		appendStringInfo(sql, " RETURNING %s", subexpire_key_columns(target));
}

/*
 * Check the result of one of the UPDATEs, count the rows it expired, note
 * what it wrote in "writes", and log the expired rows when
 * subexpire.log_expired is on.  When the target counts by outcome, a row
 * counts only when it was given the expired word; the others are counted
 * as kept.  Returns how many it expired, and in *processed, when not NULL,
 * how many rows it updated.
 */
static uint64
finish_update(int rc, SubexpireTarget *target, const char *what,
			  SubexpireRunWrites *writes, StatementParams *params,
			  uint64 *processed)
{
	int			key_from = target->count_outcome ? 2 : 1;
	uint64		expired = 0;

	if (rc != SPI_OK_UPDATE && rc != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "%s failed: %s", what, SPI_result_code_string(rc));
	if (processed != NULL)
		*processed = SPI_processed;
	if (rc != SPI_OK_UPDATE_RETURNING)
		expired = SPI_processed;
	else
	{
		TupleDesc	desc = SPI_tuptable->tupdesc;

		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	row = SPI_tuptable->vals[i];
			StringInfoData key;
			bool		isnull;

			if (target->count_outcome &&
				!DatumGetBool(SPI_getbinval(row, desc, 1, &isnull)))
				continue;		/* kept due (a NULL is not the expired word) */
			expired++;
			if (!subexpire_log_expired)
				continue;
			initStringInfo(&key);
			for (int col = key_from; col <= desc->natts; col++)
			{
				char	   *value = SPI_getvalue(row, desc, col);

				appendStringInfo(&key, "%s%s", col > key_from ? ", " : "",
								 value ? value : "NULL");
			}
			ereport(LOG,
					(errmsg("subexpire: expired subscription (%s)=(%s) in %s",
							subexpire_key_columns(target), key.data,
							target->qualified_name)));
			pfree(key.data);
		}
	}
	if (SPI_processed > 0)
		note_writes(writes, params, SPI_processed - expired);
	return expired;
}

/* "UPDATE rel SET status = $1, updated_at = $4 WHERE " */
static void
append_update_head(StringInfo sql, SubexpireTarget *target,
				   const char *relation, bool only)
{
	appendStringInfo(sql, "UPDATE %s%s SET %s = $1", only ? "ONLY " : "",
					 relation, target->status_column);
	if (target->updated_column != NULL)
		appendStringInfo(sql, ", %s = $4", target->updated_column);
	appendStringInfoString(sql, " WHERE ");
}

/*
 * The prepared plan for "sql", preparing it when it is not cached.  Plans
 * are re-planned with the actual parameter values on each run
 * (CURSOR_OPT_CUSTOM_PLAN): how many rows are due decides between an index
 * range scan and a sequential scan, and a generic plan would have to guess.
 */
static SPIPlanPtr
cached_plan(CachedStatement *statement, const char *sql,
			const StatementParams *params)
{
	SPIPlanPtr	plan;

	if (statement->plan != NULL &&
		strcmp(statement->sql, sql) == 0 &&
		memcmp(statement->types, params->types, sizeof(params->types)) == 0)
		return statement->plan;

	plan = SPI_prepare_cursor(sql, PARAM_COUNT, (Oid *) params->types,
							  CURSOR_OPT_CUSTOM_PLAN);
	if (plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep the plan of \"%s\"", sql);

	if (statement->plan != NULL)
	{
		SPI_freeplan(statement->plan);
		pfree(statement->sql);
	}
	statement->plan = plan;
	statement->sql = MemoryContextStrdup(TopMemoryContext, sql);
	memcpy(statement->types, params->types, sizeof(params->types));
	return plan;
}

static int64
count_due_rows(SubexpireTarget *target, StatementParams *params)
{
	StringInfoData sql;
	SPIPlanPtr	plan;
	bool		isnull;
	int			rc;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT pg_catalog.count(*) FROM %s WHERE ",
					 target->qualified_name);
	append_due_condition(&sql, target, params->exclude_written);
	plan = cached_plan(&count_statement, sql.data, params);

	/* Not read-only: the count must see the rows this run has just expired. */
	rc = SPI_execute_plan(plan, params->values, params->nulls, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "counting due rows failed: %s", SPI_result_code_string(rc));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Is any row due?  Ordered by the expiry column and limited to one row,
 * the probe plans as a plain scan of an index on (status, expiry) or on
 * the expiry of active rows, whatever the statistics say: it stops at the
 * first due row, and marks the index entries of dead row versions as it
 * passes them.  So a run with nothing due costs an index descent, also
 * right after a large run and before VACUUM, when a bitmap scan chosen on
 * stale statistics would visit every page of the dead versions, and a bare
 * LIMIT 1 would gamble on a sequential scan finding a due row early.
 */
static bool
any_due_rows(SubexpireTarget *target, StatementParams *params)
{
	StringInfoData sql;
	SPIPlanPtr	plan;
	int			rc;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT 1 FROM %s WHERE ", target->qualified_name);
	append_due_condition(&sql, target, params->exclude_written);
	appendStringInfo(&sql, " ORDER BY %s LIMIT 1", target->expires_column);
	plan = cached_plan(&probe_statement, sql.data, params);

	rc = SPI_execute_plan(plan, params->values, params->nulls, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "probing for due rows failed: %s",
			 SPI_result_code_string(rc));
	return SPI_processed > 0;
}

/*
 * Number of rows due at as_of.  Reads only: serves dry runs, the
 * max_expired_per_run guard and monitoring.  The caller is connected to SPI.
 */
int64
subexpire_count_due(SubexpireTarget *target, TimestampTz as_of)
{
	StatementParams params;

	set_params(&params, target, as_of, as_of, NULL);
	return count_due_rows(target, &params);
}

/*
 * Say how many rows the run updated that stayed due, if any: a trigger
 * kept their status, so they are not counted as expired, and the run did
 * not come back for them.
 */
void
subexpire_warn_kept_rows(const SubexpireTarget *target,
						 const SubexpireRunWrites *writes)
{
	if (writes->kept > 0)
		ereport(WARNING,
				(errmsg_plural("%lld due subscription in %s stayed due after the run updated it",
							   "%lld due subscriptions in %s stayed due after the run updated them",
							   (unsigned long) writes->kept,
							   (long long) writes->kept, target->qualified_name),
				 errdetail("A BEFORE trigger on the table gave them another status than subexpire.expired_status; they are not counted as expired, and the run did not try them again."),
				 errhint("Check the table's triggers; the next run tries them again.")));
}

/* One statement with its lock_timeout, for subexpire_try(). */
typedef struct LockWaitStep
{
	SPIPlanPtr	plan;
	SubexpireTarget *target;
	StatementParams *params;
	SubexpireRunWrites *writes;
	int			timeout_ms;
	uint64		expired;
} LockWaitStep;

static void
execute_step(void *arg)
{
	LockWaitStep *step = arg;
	int			guc_level = NewGUCNestLevel();
	char		timeout[32];
	int			rc;

	snprintf(timeout, sizeof(timeout), "%d", Max(step->timeout_ms, 1));
	(void) set_config_option("lock_timeout", timeout, PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	rc = SPI_execute_plan(step->plan, step->params->values,
						  step->params->nulls, false, 0);
	step->expired = finish_update(rc, step->target, "expiring due rows",
								  step->writes, step->params, NULL);
	AtEOXact_GUC(true, guc_level);
}

/*
 * Execute plan with lock_timeout set to timeout_ms, in a subtransaction.
 * Returns false, with the statement's work undone, when it gave up waiting
 * for a row lock (lock timeout or deadlock; *deadlocked says which); true,
 * with the number of rows it expired in *expired, when it ran.  Any other
 * error propagates.
 */
static bool
execute_with_lock_wait(SPIPlanPtr plan, SubexpireTarget *target,
					   StatementParams *params, SubexpireRunWrites *writes,
					   int timeout_ms, uint64 *expired, bool *deadlocked)
{
	LockWaitStep step = {plan, target, params, writes, timeout_ms, 0};
	ErrorData  *error = subexpire_try(execute_step, &step);

	*deadlocked = false;
	if (error == NULL)
	{
		*expired = step.expired;
		return true;
	}
	if (error->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE &&
		error->sqlerrcode != ERRCODE_T_R_DEADLOCK_DETECTED)
		ReThrowError(error);
	*deadlocked = (error->sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED);
	FreeErrorData(error);
	return false;
}

/*
 * A table that holds rows of the target, for the statements that work
 * table by table (SKIP LOCKED and ctid need one heap).
 */
typedef struct HeapTable
{
	Oid			relid;
	char	   *name;			/* quoted */
	bool		rows_move;		/* expiring moves rows to another partition */
} HeapTable;

/*
 * Is "column" (a name in the target) one of the partition key columns of
 * partitioned table rel?  Then a row that changes it moves to another
 * partition, which an UPDATE of the leaf itself cannot do.
 */
static bool
is_partition_key_column(Relation rel, const char *column)
{
	AttrNumber	attnum;
	bool		used_in_expr;

	if (column == NULL)
		return false;
	attnum = get_attnum(RelationGetRelid(rel), column);
	if (attnum == InvalidAttrNumber)
		return false;
	return has_partition_attrs(rel,
							   bms_make_singleton(attnum - FirstLowInvalidHeapAttributeNumber),
							   &used_in_expr);
}

/*
 * The tables that hold the target's rows: the table itself, its
 * inheritance children, or a partitioned table's leaf partitions
 * (subexpire_open_target() has refused foreign ones).
 */
static List *
heap_tables(SubexpireTarget *target)
{
	List	   *all = find_all_inheritors(target->relid, RowExclusiveLock, NULL);
	List	   *tables = NIL;
	bool		rows_move = false;
	char	   *status_name = get_attname(target->relid, target->status_attnum, false);
	char	   *updated_name = NULL;
	ListCell   *lc;

	if (target->updated_column)
		updated_name = get_attname(target->relid, target->updated_attnum, false);
	foreach(lc, all)
	{
		Oid			relid = lfirst_oid(lc);
		char		relkind = get_rel_relkind(relid);

		if (relkind == RELKIND_PARTITIONED_TABLE)
		{
			Relation	rel = table_open(relid, NoLock);

			rows_move |= is_partition_key_column(rel, status_name) ||
				is_partition_key_column(rel, updated_name);
			table_close(rel, NoLock);
		}
		else if (relkind == RELKIND_RELATION)
		{
			HeapTable  *table = palloc(sizeof(HeapTable));

			table->relid = relid;
			table->name = subexpire_relation_name(relid);
			tables = lappend(tables, table);
		}
	}
	foreach(lc, tables)
		((HeapTable *) lfirst(lc))->rows_move = rows_move;
	return tables;
}

/*
 * "UPDATE ONLY leaf SET status = $1, updated_at = $4 WHERE ", or, when
 * expiring moves rows between partitions, the same through the partitioned
 * table, restricted to the leaf's rows, so that PostgreSQL routes them.
 */
static void
append_leaf_update_head(StringInfo sql, SubexpireTarget *target,
						HeapTable *table)
{
	if (!table->rows_move)
	{
		append_update_head(sql, target, table->name, true);
		return;
	}
	append_update_head(sql, target, target->qualified_name, false);
	appendStringInfo(sql, "tableoid OPERATOR(pg_catalog.=) '%u'::pg_catalog.oid AND ",
					 table->relid);
}

/* Expire every due row of one table that nobody else holds locked. */
static uint64
expire_unlocked_rows(SubexpireTarget *target, HeapTable *table,
					 StatementParams *params, SubexpireRunWrites *writes)
{
	StringInfoData sql;
	int			rc;

	initStringInfo(&sql);
	append_leaf_update_head(&sql, target, table);
	appendStringInfoString(&sql, "ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT ctid FROM ONLY ");
	appendStringInfoString(&sql, table->name);
	appendStringInfoString(&sql, " WHERE ");
	append_due_condition(&sql, target, params->exclude_written);
	appendStringInfoString(&sql, " FOR NO KEY UPDATE SKIP LOCKED)) AND ");
	append_due_condition(&sql, target, params->exclude_written);
	append_returning(&sql, target);

	rc = SPI_execute_with_args(sql.data, PARAM_COUNT, params->types,
							   params->values, params->nulls, false, 0);
	return finish_update(rc, target, "expiring unlocked rows", writes, params,
						 NULL);
}

/*
 * Come back for the due rows of one table that were locked, one at a time,
 * waiting for each while the run's lock-wait budget (until deadline) lasts.
 * A deadlock ends the waiting: the transaction we deadlocked with waits for
 * a row this run holds, and waiting for the next row would likely form the
 * same cycle again, with that transaction as the victim this time.
 */
static uint64
expire_locked_rows(SubexpireTarget *target, HeapTable *table,
				   StatementParams *params, SubexpireRunWrites *writes,
				   TimestampTz deadline)
{
	StringInfoData sql;
	SPIPlanPtr	one_row;
	SPITupleTable *candidates;
	uint64		ncandidates;
	uint64		expired = 0;
	int			rc;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT ctid FROM ONLY %s WHERE ", table->name);
	append_due_condition(&sql, target, params->exclude_written);
	rc = SPI_execute_with_args(sql.data, PARAM_COUNT, params->types,
							   params->values, params->nulls, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "finding locked rows failed: %s",
			 SPI_result_code_string(rc));
	candidates = SPI_tuptable;
	ncandidates = SPI_processed;
	if (ncandidates == 0)
		return 0;

	resetStringInfo(&sql);
	append_leaf_update_head(&sql, target, table);
	appendStringInfoString(&sql, "ctid OPERATOR(pg_catalog.=) $5 AND ");
	append_due_condition(&sql, target, params->exclude_written);
	append_returning(&sql, target);
	one_row = SPI_prepare(sql.data, PARAM_COUNT, params->types);
	if (one_row == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql.data,
			 SPI_result_code_string(SPI_result));

	for (uint64 i = 0; i < ncandidates; i++)
	{
		long		wait_ms;
		uint64		processed;
		bool		isnull;
		bool		deadlocked;

		wait_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
												  deadline);
		if (wait_ms <= 0)
			break;

		params->values[4] = SPI_getbinval(candidates->vals[i],
										  candidates->tupdesc, 1, &isnull);
		params->nulls[4] = ' ';
		if (execute_with_lock_wait(one_row, target, params, writes,
								   (int) wait_ms, &processed, &deadlocked))
			expired += processed;
		else if (deadlocked)
			break;
	}
	params->nulls[4] = 'n';

	SPI_freeplan(one_row);
	SPI_freetuptable(candidates);
	return expired;
}

/*
 * The due rows that an application transaction still holds locked at the
 * end of the locked-rows path: those whose locker (xmax) is in progress
 * and is not another expiry run.  A row held by another run is that run's
 * to expire and count; a row whose locker has ended since this statement's
 * snapshot was taken has changed (expired by a run that just committed, or
 * released for the next run), and a row with no locker is not held at all
 * (a due row committed after the last pass): none of them is counted.  A
 * row locked by several transactions at once (a multixact) is not counted
 * either: its xmax is not a transaction id.
 */
static int64
count_skipped_rows(SubexpireTarget *target, StatementParams *params)
{
	StringInfoData sql;
	int64		skipped = 0;
	int			rc;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT xmax FROM %s WHERE ", target->qualified_name);
	append_due_condition(&sql, target, params->exclude_written);
	rc = SPI_execute_with_args(sql.data, PARAM_COUNT, params->types,
							   params->values, params->nulls, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "counting locked rows failed: %s",
			 SPI_result_code_string(rc));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		TransactionId locker;

		locker = DatumGetTransactionId(SPI_getbinval(SPI_tuptable->vals[i],
													 SPI_tuptable->tupdesc,
													 1, &isnull));
		if (!isnull && TransactionIdIsNormal(locker) &&
			TransactionIdIsInProgress(locker) &&
			!subexpire_is_run_xact(locker))
			skipped++;
	}
	SPI_freetuptable(SPI_tuptable);
	return skipped;
}

/*
 * The locked-rows path: see the file header.  Returns the rows it expired,
 * and in *skipped the due rows still locked at the end.
 */
static uint64
expire_around_locks(SubexpireTarget *target, StatementParams *params,
					SubexpireRunWrites *writes, bool may_wait, int64 *skipped)
{
	List	   *tables = heap_tables(target);
	TimestampTz deadline;
	uint64		expired = 0;
	ListCell   *lc;

	foreach(lc, tables)
		expired += expire_unlocked_rows(target, lfirst(lc), params, writes);

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   subexpire_lock_wait);

	/*
	 * After a deadlock, the other transaction waits for rows this run has
	 * just taken again; waiting for its rows would close the cycle again.
	 */
	if (may_wait)
		foreach(lc, tables)
			expired += expire_locked_rows(target, lfirst(lc), params, writes,
										  deadline);

	/*
	 * Rows released since, and rows that a committed update moved to a new
	 * version (so that the one-row UPDATE no longer found them by ctid).
	 */
	foreach(lc, tables)
		expired += expire_unlocked_rows(target, lfirst(lc), params, writes);

	*skipped = count_skipped_rows(target, params);
	return expired;
}

/*
 * Expire every row of the target due at as_of, setting the updated-at
 * column (when configured) to run_time, in the current transaction.  The
 * caller is connected to SPI and has opened the target for a run; what
 * it writes is noted in "writes", and the row versions that the run wrote
 * before, by the transactions in "writes", are left out.
 */
SubexpireRunResult
subexpire_expire_due(SubexpireTarget *target, TimestampTz as_of,
					 TimestampTz run_time, SubexpireRunWrites *writes)
{
	SubexpireRunResult result = {0, 0};
	StatementParams params;
	StringInfoData sql;
	SPIPlanPtr	plan;
	uint64		processed;
	bool		deadlocked;

	set_params(&params, target, as_of, run_time, writes);

	if (!any_due_rows(target, &params))
		return result;

	initStringInfo(&sql);
	append_update_head(&sql, target, target->qualified_name, false);
	append_due_condition(&sql, target, params.exclude_written);
	append_returning(&sql, target);
	plan = cached_plan(&expire_statement, sql.data, &params);

	if (execute_with_lock_wait(plan, target, &params, writes,
							   subexpire_lock_wait, &processed, &deadlocked))
		result.expired_count = (int64) processed;
	else
		result.expired_count = (int64) expire_around_locks(target, &params,
														   writes, !deadlocked,
														   &result.skipped_locked);

	if (result.skipped_locked > 0)
		ereport(WARNING,
				(errmsg_plural("%lld due subscription in %s was left active because another transaction held it locked",
							   "%lld due subscriptions in %s were left active because other transactions held them locked",
							   (unsigned long) result.skipped_locked,
							   (long long) result.skipped_locked,
							   target->qualified_name),
				 errdetail("The run waited up to subexpire.lock_wait (%d ms) for locked rows, then went on without them.",
						   subexpire_lock_wait),
				 errhint("The next run tries again; subexpire_runs.skipped_locked records the count.")));
	return result;
}

/*
 * The worker's list of the rows to expire, table by table, in the order of
 * their pages.  It is made once, in a transaction of its own, from one
 * scan of the due rows (a bitmap scan of the (status, expiry) index when
 * many are due), and each batch then takes the next rows of the list by
 * ctid (a TID scan).  So a run reads the table in page order, as a single
 * set-based UPDATE does, rather than one random page per row in expiry
 * order.
 *
 * The list keeps at most maintenance_work_mem of ctids, as VACUUM keeps
 * its dead ones; with more rows due, the run makes a new list when it has
 * expired the first (subexpire_find_due_rows() says so).  A row that
 * changed since the list was made is not missed: every batch re-checks the
 * due condition on the row version it changes, and counts the listed rows
 * it did not expire.  A row renewed meanwhile is left alone; a row updated
 * and still due, or locked by another transaction, is still due at the
 * run's last step, subexpire_expire_due(), which comes back for every due
 * row, those made due after the list included.  When the batches expired
 * every listed row, the run has done what one transaction from the list's
 * snapshot would have done, and the worker leaves that step out
 * (subexpire_due_rows_all_taken()): its search would step over the index
 * entries of every row the run just expired, dead until VACUUM, to find
 * nothing, or only rows that became due after the list, which the next
 * run takes.
 */
typedef struct TableDueRows
{
	HeapTable  *table;
	ItemPointerData *tids;		/* in page order */
	int64		ntids;
	int64		next;			/* the first not yet given to a batch */
	bool		complete;		/* the list holds every row that was due */
} TableDueRows;

struct SubexpireDueRows
{
	MemoryContext context;		/* lives as long as the run */
	List	   *tables;			/* of TableDueRows */
	int64		not_taken;		/* listed rows a batch did not expire */
};

SubexpireDueRows *
subexpire_due_rows_create(MemoryContext context)
{
	SubexpireDueRows *rows;

	rows = MemoryContextAllocZero(context, sizeof(SubexpireDueRows));
	rows->context = context;
	return rows;
}

/*
 * Look up the current name of a listed table (it may have been renamed
 * since the list was made), in the current transaction's memory: it is used
 * in this transaction only, and looked up again in the next.  False when
 * the table is gone, dropped with its rows.
 */
static bool
refresh_table_name(HeapTable *table)
{
	table->name = subexpire_relation_name(table->relid);
	return table->name != NULL;
}

/*
 * Whether every row listed so far was expired by a batch: none was locked
 * by another transaction, changed since the list, or no longer due.
 */
bool
subexpire_due_rows_all_taken(const SubexpireDueRows *rows)
{
	return rows->not_taken == 0;
}

static int
compare_tids(const void *a, const void *b)
{
	return ItemPointerCompare((ItemPointer) a, (ItemPointer) b);
}

/*
 * Add the ctids of one table's due rows to its list, up to "budget" of
 * them, through a cursor so that only the ctids are kept.  Returns how
 * many it added.
 */
static int64
collect_table(SubexpireTarget *target, TableDueRows *due,
			  StatementParams *params, int64 budget, MemoryContext context)
{
	StringInfoData sql;
	Portal		portal;
	int64		allocated = 0;
	int64		fetched;

	due->ntids = 0;
	due->next = 0;
	due->complete = false;
	if (!refresh_table_name(due->table))
	{
		due->complete = true;
		return 0;
	}
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT ctid FROM ONLY %s WHERE ", due->table->name);
	append_due_condition(&sql, target, params->exclude_written);
	portal = SPI_cursor_open_with_args(NULL, sql.data, PARAM_COUNT,
									   params->types, params->values,
									   params->nulls, true, 0);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, 10000);
		if (SPI_processed == 0)
		{
			due->complete = true;
			break;
		}
		fetched = Min((int64) SPI_processed, budget - due->ntids);
		if (due->ntids + fetched > allocated)
		{
			int64		want = Max(allocated * 2, due->ntids + fetched);

			want = Min(want, budget);
			if (due->tids == NULL)
				due->tids = MemoryContextAllocHuge(context, want * sizeof(ItemPointerData));
			else
				due->tids = repalloc_huge(due->tids, want * sizeof(ItemPointerData));
			allocated = want;
		}
		for (int64 i = 0; i < fetched; i++)
		{
			bool		isnull;
			Datum		tid = SPI_getbinval(SPI_tuptable->vals[i],
											SPI_tuptable->tupdesc, 1, &isnull);

			due->tids[due->ntids++] = *((ItemPointer) DatumGetPointer(tid));
		}
		SPI_freetuptable(SPI_tuptable);
		if (due->ntids >= budget)
			break;				/* full: the rest waits for the next list */
	}
	SPI_cursor_close(portal);
	if (due->ntids > 1)
		qsort(due->tids, due->ntids, sizeof(ItemPointerData), compare_tids);
	return due->ntids;
}

/*
 * Make the run's list of due rows (the first time), or its next list
 * (when the one before could not hold every due row and has been used
 * up).  Returns false when there is nothing more to list: the batches are
 * done, and the run's last step follows.  The caller is connected to SPI,
 * in a transaction that expires nothing.
 */
bool
subexpire_find_due_rows(SubexpireTarget *target, TimestampTz as_of,
						SubexpireDueRows *rows, const SubexpireRunWrites *writes)
{
	StatementParams params;
	int64		budget = (int64) maintenance_work_mem * 1024 / sizeof(ItemPointerData);
	bool		first = (rows->tables == NIL);
	bool		any = false;
	ListCell   *lc;

	set_params(&params, target, as_of, as_of, writes);
	if (first)
	{
		MemoryContext old = MemoryContextSwitchTo(rows->context);
		List	   *tables = heap_tables(target);

		foreach(lc, tables)
		{
			TableDueRows *due = palloc0(sizeof(TableDueRows));

			due->table = lfirst(lc);
			rows->tables = lappend(rows->tables, due);
		}
		MemoryContextSwitchTo(old);
	}

	foreach(lc, rows->tables)
	{
		TableDueRows *due = lfirst(lc);

		if (!first && due->complete)
		{
			/* Listed in full before, and used up. */
			due->ntids = due->next = 0;
			continue;
		}
		if (budget <= 0)
		{
			/* The list is full: this table waits for the next one. */
			due->ntids = due->next = 0;
			due->complete = false;
			continue;
		}
		budget -= collect_table(target, due, &params, budget, rows->context);
		any |= (due->ntids > 0);
	}
	return any;
}

/*
 * A batch locks and expires its rows this many at a time, each piece one
 * statement, all in the batch's transaction.  One statement for the whole
 * batch would lock every row at its start (the ARRAY() of locked ctids is
 * computed before the UPDATE reads its first row), and hold each for the
 * whole batch; in pieces, a row is held from its piece's start to the
 * batch's commit, about half as long on average, so an application
 * statement that wants a row the worker holds is half as likely to find it
 * held, and waits less when it does.
 */
#define ROWS_LOCKED_AT_ONCE 1000

/*
 * Expire up to "limit" of the listed rows that are still due and that
 * nobody else holds locked, in the current transaction: one batch of the
 * worker's run, the next rows of the list in page order.  Rows locked by
 * others are skipped without waiting, and counted as not taken: the run's
 * last step comes back for them.  Returns how many it expired; *more says
 * whether rows of the list are left for another batch.
 */
int64
subexpire_expire_batch(SubexpireTarget *target, TimestampTz as_of,
					   TimestampTz run_time, int64 limit,
					   SubexpireDueRows *rows, SubexpireRunWrites *writes,
					   bool *more)
{
	StatementParams params;
	int64		offered = 0;
	int64		expired = 0;
	ListCell   *lc;

	set_params(&params, target, as_of, run_time, writes);
	*more = false;
	foreach(lc, rows->tables)
	{
		TableDueRows *due = lfirst(lc);
		int64		count = Min(due->ntids - due->next, limit - offered);
		StringInfoData sql;
		SPIPlanPtr	plan;

		if (count <= 0)
		{
			*more |= (due->next < due->ntids);
			continue;
		}
		if (!refresh_table_name(due->table))
		{
			due->next = due->ntids;
			continue;
		}

		initStringInfo(&sql);
		append_leaf_update_head(&sql, target, due->table);
		appendStringInfo(&sql, "ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT ctid FROM ONLY %s WHERE ctid OPERATOR(pg_catalog.=) ANY ($6) AND ",
						 due->table->name);
		/* The list left out the row versions that the run wrote itself. */
		append_due_condition(&sql, target, false);
		appendStringInfoString(&sql, " FOR NO KEY UPDATE SKIP LOCKED)) AND ");
		append_due_condition(&sql, target, false);
		append_returning(&sql, target);

		/*
		 * A generic plan, so that the ctids stay a parameter: shown the
		 * constant array of a whole batch, the planner costs a TID scan at
		 * one random page read a row, and may prefer to read the whole table
		 * instead.
		 */
		plan = SPI_prepare_cursor(sql.data, PARAM_COUNT, params.types,
								  CURSOR_OPT_GENERIC_PLAN);
		if (plan == NULL)
			elog(ERROR, "could not prepare \"%s\": %s", sql.data,
				 SPI_result_code_string(SPI_result));

		while (count > 0)
		{
			int			piece = (int) Min(count, ROWS_LOCKED_AT_ONCE);
			Datum	   *tids = palloc(piece * sizeof(Datum));
			ArrayType  *array;
			int			rc;
			uint64		taken;

			for (int i = 0; i < piece; i++)
				tids[i] = PointerGetDatum(&due->tids[due->next + i]);
			array = construct_array(tids, piece, TIDOID,
									sizeof(ItemPointerData), false,
									TYPALIGN_SHORT);
			params.values[5] = PointerGetDatum(array);
			params.nulls[5] = ' ';
			due->next += piece;
			offered += piece;
			count -= piece;

			rc = SPI_execute_plan(plan, params.values, params.nulls, false, 0);
			expired += (int64) finish_update(rc, target, "expiring a batch",
											 writes, &params, &taken);
			rows->not_taken += piece - (int64) taken;
			SPI_freetuptable(SPI_tuptable);
			pfree(array);
			pfree(tids);
		}
		SPI_freeplan(plan);
		pfree(sql.data);
		*more |= (due->next < due->ntids);
	}
	return expired;
}
