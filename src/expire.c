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
 * subtransaction with lock_timeout set to subexpire.lock_wait, so that a
 * row held locked by an application transaction for longer than that
 * cannot stall the run: the UPDATE gives up, its work is undone, and the
 * run falls back to the locked-rows path.  That path lists the due rows and
 * expires every one it can lock at once (FOR NO KEY UPDATE SKIP LOCKED),
 * comes back for the rows that were locked one by one while the lock_wait
 * budget lasts, takes once more whatever has been released meanwhile, and
 * counts what is still due and locked as skipped, to be recorded in the
 * run's record and left for the next run; rows locked by another expiry
 * run in progress are that run's, and not counted.  For the worker,
 * subexpire_find_due_rows() lists the due rows in page order, and
 * subexpire_expire_batch() expires the next batch of them that nobody
 * holds locked in each transaction, locking them a piece at a time.
 *
 * A due row whose update fails with an error about a row (a trigger
 * raises, a constraint refuses the new row: src/failed_rows.c) must not
 * stop the others.  The common path's UPDATE that fails so is undone, and
 * the run takes the locked-rows path, whose listed rows are expired in
 * pieces, each in a subtransaction: a piece that fails is halved, down to
 * single rows (expire_tids()), and a single row that fails is recorded
 * and left as it was, and out of the run's later lists and statements.
 * The worker's pieces are the same.
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
 * On a Citus hash-distributed table, where a ctid is per shard and SKIP
 * LOCKED runs on one shard only, the locked-rows path and the worker's list
 * and batches are those of src/distributed.c, chosen once a run; the
 * probe, the count and the common path are the same statements.  The parts
 * every statement is made of are in src/statement.c.
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

#include "distributed.h"
#include "expire.h"
#include "statement.h"
#include "run_xacts.h"
#include "settings.h"
#include "subxact.h"
#include "target.h"

static SubexpireCachedStatement expire_statement;
static SubexpireCachedStatement count_statement;
static SubexpireCachedStatement probe_statement;

static int64
count_due_rows(SubexpireTarget *target, SubexpireStatementParams *params)
{
	StringInfoData sql;
	SPIPlanPtr	plan;
	bool		isnull;
	int			rc;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT pg_catalog.count(*) FROM %s WHERE ",
					 target->qualified_name);
	subexpire_append_due_condition(&sql, target, params->exclude_written);
	plan = subexpire_cached_plan(&count_statement, sql.data, params);

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
any_due_rows(SubexpireTarget *target, SubexpireStatementParams *params)
{
	StringInfoData sql;
	SPIPlanPtr	plan;
	int			rc;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT 1 FROM %s WHERE ", target->qualified_name);
	subexpire_append_due_condition(&sql, target, params->exclude_written);
	appendStringInfo(&sql, " ORDER BY %s LIMIT 1", target->expires_column);
	plan = subexpire_cached_plan(&probe_statement, sql.data, params);

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
	SubexpireStatementParams params;

	subexpire_set_params(&params, target, as_of, as_of, NULL);
	return count_due_rows(target, &params);
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
 * Is column "attnum" of the target one of the partition key columns of
 * partitioned table rel?  Then a row that changes it moves to another
 * partition, which an UPDATE of the leaf itself cannot do.
 */
static bool
is_partition_key_column(SubexpireTarget *target, Relation rel,
						AttrNumber attnum)
{
	bool		used_in_expr;

	if (attnum == InvalidAttrNumber)
		return false;
	/* rel's own number of the column: a partition may order them otherwise */
	attnum = get_attnum(RelationGetRelid(rel),
						get_attname(target->relid, attnum, false));
	if (attnum == InvalidAttrNumber)
		return false;
	return has_partition_attrs(rel,
							   bms_make_singleton(attnum - FirstLowInvalidHeapAttributeNumber),
							   &used_in_expr);
}

/* Does expiring a row change a partition key column of rel? */
static bool
expiring_moves_rows(SubexpireTarget *target, Relation rel)
{
	if (is_partition_key_column(target, rel, target->status_attnum) ||
		is_partition_key_column(target, rel, target->updated_attnum))
		return true;
	for (int i = 0; i < target->nset; i++)
		if (is_partition_key_column(target, rel, target->set_attnums[i]))
			return true;
	return false;
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
	ListCell   *lc;

	foreach(lc, all)
	{
		Oid			relid = lfirst_oid(lc);
		char		relkind = get_rel_relkind(relid);

		if (relkind == RELKIND_PARTITIONED_TABLE)
		{
			Relation	rel = table_open(relid, NoLock);

			rows_move |= expiring_moves_rows(target, rel);
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
		subexpire_append_update_head(sql, target, table->name, true);
		return;
	}
	subexpire_append_update_head(sql, target, target->qualified_name, false);
	appendStringInfo(sql, "tableoid OPERATOR(pg_catalog.=) '%u'::pg_catalog.oid AND ",
					 table->relid);
}

static uint64 expire_unlocked_rows(SubexpireTarget *target, HeapTable *table,
								   SubexpireStatementParams *params,
								   SubexpireRunWrites *writes);

/* The row $5 of one table, for subexpire_record_failed(). */
static char *
one_row_sql(HeapTable *table)
{
	return psprintf("ONLY %s WHERE ctid OPERATOR(pg_catalog.=) $5",
					table->name);
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
				   SubexpireStatementParams *params, SubexpireRunWrites *writes,
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
	subexpire_append_due_condition(&sql, target, params->exclude_written);
	rc = SPI_execute_with_args(sql.data, params->count, params->types,
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
	subexpire_append_due_condition(&sql, target, params->exclude_written);
	subexpire_append_returning(&sql, target);
	one_row = SPI_prepare(sql.data, params->count, params->types);
	if (one_row == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql.data,
			 SPI_result_code_string(SPI_result));

	for (uint64 i = 0; i < ncandidates; i++)
	{
		long		wait_ms;
		uint64		row_expired;
		uint64		processed;
		bool		isnull;
		Datum		tid;
		char	   *row_error;
		SubexpireUpdateOutcome outcome;

		wait_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
												  deadline);
		if (wait_ms <= 0)
			break;

		tid = SPI_getbinval(candidates->vals[i], candidates->tupdesc, 1,
							&isnull);
		if (subexpire_run_writes_failed_row(writes, table->relid,
											(ItemPointer) DatumGetPointer(tid)))
			continue;
		params->values[SUBEXPIRE_PARAM_CTID] = tid;
		params->nulls[SUBEXPIRE_PARAM_CTID] = ' ';
		outcome = subexpire_try_update(one_row, target, params, writes,
									   (int) wait_ms, &row_expired,
									   &processed, &row_error);
		expired += row_expired;
		if (outcome == SUBEXPIRE_DEADLOCKED)
			break;
		if (outcome == SUBEXPIRE_ROW_FAILED)
			(void) subexpire_record_failed(target, writes, params,
										   table->relid,
										   (ItemPointer) DatumGetPointer(tid),
										   one_row_sql(table), row_error);
	}
	params->nulls[SUBEXPIRE_PARAM_CTID] = 'n';

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
count_skipped_rows(SubexpireTarget *target, SubexpireStatementParams *params)
{
	StringInfoData sql;
	int64		skipped = 0;
	int			rc;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT xmax FROM %s WHERE ", target->qualified_name);
	subexpire_append_due_condition(&sql, target, params->exclude_written);
	rc = SPI_execute_with_args(sql.data, params->count, params->types,
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
expire_around_locks(SubexpireTarget *target, SubexpireStatementParams *params,
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
	SubexpireRunResult result = {0};
	SubexpireStatementParams params;
	StringInfoData sql;
	SPIPlanPtr	plan;
	uint64		expired = 0;
	uint64		processed;
	char	   *row_error;
	SubexpireUpdateOutcome outcome;

	subexpire_set_params(&params, target, as_of, run_time, writes);

	if (!any_due_rows(target, &params))
		return result;

	/*
	 * Once a row has failed, the plain UPDATE would fail on it again: the run
	 * goes straight to the listed pieces, which leave it out.
	 */
	if (subexpire_run_writes_failed(writes) > 0)
		outcome = SUBEXPIRE_ROW_FAILED;
	else
	{
		initStringInfo(&sql);
		subexpire_append_update_head(&sql, target, target->qualified_name, false);
		subexpire_append_due_condition(&sql, target, params.exclude_written);
		subexpire_append_returning(&sql, target);
		plan = subexpire_cached_plan(&expire_statement, sql.data, &params);
		outcome = subexpire_try_update(plan, target, &params, writes,
									   subexpire_lock_wait, &expired,
									   &processed, &row_error);
	}

	if (outcome == SUBEXPIRE_UPDATED)
		result.expired_count = (int64) expired;
	else if (target->distributed)
		result.expired_count = (int64)
			subexpire_expire_distributed_around_locks(target, &params, writes,
													  outcome != SUBEXPIRE_DEADLOCKED,
													  &result.skipped_locked);
	else
		result.expired_count = (int64)
			expire_around_locks(target, &params, writes,
								outcome != SUBEXPIRE_DEADLOCKED,
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
	bool		chosen;			/* the kind of list is chosen, once a run */
	List	   *tables;			/* of TableDueRows */
	SubexpireKeyRanges *ranges; /* instead, on a distributed table */
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
 * them, through a cursor so that only the ctids are kept, leaving out the
 * rows that failed earlier in the run.  Returns how many it added.
 */
static int64
collect_table(SubexpireTarget *target, TableDueRows *due,
			  SubexpireStatementParams *params,
			  const SubexpireRunWrites *writes, int64 budget,
			  MemoryContext context)
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
	subexpire_append_due_condition(&sql, target, params->exclude_written);
	/* A new snapshot: the locked-rows path lists rows committed meanwhile. */
	portal = SPI_cursor_open_with_args(NULL, sql.data, params->count,
									   params->types, params->values,
									   params->nulls, false, 0);
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
			ItemPointer tid = (ItemPointer) DatumGetPointer(SPI_getbinval(SPI_tuptable->vals[i],
																		  SPI_tuptable->tupdesc,
																		  1, &isnull));

			if (!subexpire_run_writes_failed_row(writes, due->table->relid, tid))
				due->tids[due->ntids++] = *tid;
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
	SubexpireStatementParams params;
	int64		budget = (int64) maintenance_work_mem * 1024 / sizeof(ItemPointerData);
	bool		first = (rows->tables == NIL);
	bool		any = false;
	ListCell   *lc;

	subexpire_set_params(&params, target, as_of, as_of, writes);
	if (!rows->chosen)
	{
		rows->chosen = true;
		if (target->distributed)
			rows->ranges = subexpire_key_ranges_create(rows->context);
	}
	if (rows->ranges != NULL)
		return subexpire_find_key_ranges(target, &params, rows->ranges);
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
		budget -= collect_table(target, due, &params, writes, budget,
								rows->context);
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
 * Expire those of the n rows at tids of one table that are still due and
 * that nobody else holds locked, without waiting: one statement, in a
 * subtransaction.  When it fails on a row, each half is tried in turn,
 * down to single rows; a single row that fails is recorded and left as it
 * was (src/failed_rows.c).  So rows that fail cost a number of statements
 * that grows with the logarithm of n, and a piece with none costs one.
 * Returns how many rows it expired; *updated grows by the rows it updated.
 */
static uint64
expire_tids(SubexpireTarget *target, HeapTable *table, SPIPlanPtr plan,
			ItemPointer tids, int n, SubexpireStatementParams *params,
			SubexpireRunWrites *writes, uint64 *updated)
{
	Datum	   *values = palloc(n * sizeof(Datum));
	ArrayType  *array;
	uint64		expired;
	uint64		processed;
	char	   *row_error;
	SubexpireUpdateOutcome outcome;

	CHECK_FOR_INTERRUPTS();
	for (int i = 0; i < n; i++)
		values[i] = PointerGetDatum(&tids[i]);
	array = construct_array(values, n, TIDOID, sizeof(ItemPointerData), false,
							TYPALIGN_SHORT);
	params->values[SUBEXPIRE_PARAM_CTIDS] = PointerGetDatum(array);
	params->nulls[SUBEXPIRE_PARAM_CTIDS] = ' ';
	outcome = subexpire_try_update(plan, target, params, writes,
								   SUBEXPIRE_LOCK_WAIT_AS_IS, &expired,
								   &processed, &row_error);
	params->nulls[SUBEXPIRE_PARAM_CTIDS] = 'n';
	pfree(array);
	pfree(values);
	if (outcome == SUBEXPIRE_UPDATED)
	{
		*updated += processed;
		return expired;
	}
	Assert(outcome == SUBEXPIRE_ROW_FAILED);
	if (n == 1)
	{
		params->values[SUBEXPIRE_PARAM_CTID] = PointerGetDatum(&tids[0]);
		params->nulls[SUBEXPIRE_PARAM_CTID] = ' ';
		(void) subexpire_record_failed(target, writes, params, table->relid,
									   &tids[0], one_row_sql(table),
									   row_error);
		params->nulls[SUBEXPIRE_PARAM_CTID] = 'n';
		return 0;
	}
	pfree(row_error);
	expired = expire_tids(target, table, plan, tids, n / 2, params, writes,
						  updated);
	expired += expire_tids(target, table, plan, tids + n / 2, n - n / 2,
						   params, writes, updated);
	return expired;
}

/*
 * Expire "count" rows of one table's list from due->next on (those still
 * due that nobody else holds locked), in pieces of ROWS_LOCKED_AT_ONCE.
 * Returns how many it expired; *not_taken grows by the listed rows it
 * neither updated nor found failing.
 */
static uint64
expire_listed(SubexpireTarget *target, TableDueRows *due, int64 count,
			  SubexpireStatementParams *params, SubexpireRunWrites *writes,
			  int64 *not_taken)
{
	StringInfoData sql;
	SPIPlanPtr	plan;
	uint64		expired = 0;

	initStringInfo(&sql);
	append_leaf_update_head(&sql, target, due->table);
	appendStringInfo(&sql, "ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT ctid FROM ONLY %s WHERE ctid OPERATOR(pg_catalog.=) ANY ($6) AND ",
					 due->table->name);
	/* The list left out the row versions that the run wrote itself. */
	subexpire_append_due_condition(&sql, target, false);
	appendStringInfoString(&sql, " FOR NO KEY UPDATE SKIP LOCKED)) AND ");
	subexpire_append_due_condition(&sql, target, false);
	subexpire_append_returning(&sql, target);

	/*
	 * A generic plan, so that the ctids stay a parameter: shown the constant
	 * array of a whole batch, the planner costs a TID scan at one random page
	 * read a row, and may prefer to read the whole table instead.
	 */
	plan = SPI_prepare_cursor(sql.data, params->count, params->types,
							  CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql.data,
			 SPI_result_code_string(SPI_result));

	while (count > 0)
	{
		int			piece = (int) Min(count, ROWS_LOCKED_AT_ONCE);
		int64		failed_before = subexpire_run_writes_failed(writes);
		uint64		updated = 0;

		expired += expire_tids(target, due->table, plan, &due->tids[due->next],
							   piece, params, writes, &updated);
		*not_taken += piece - (int64) updated -
			(subexpire_run_writes_failed(writes) - failed_before);
		due->next += piece;
		count -= piece;
	}
	SPI_freeplan(plan);
	pfree(sql.data);
	return expired;
}

/*
 * Expire every due row of one table that nobody else holds locked: the
 * locked-rows path's passes.  The rows are listed, leaving out those that
 * failed, and expired from the list as the worker's batches do, another
 * list while one could not hold them all and its rows were expired.
 */
static uint64
expire_unlocked_rows(SubexpireTarget *target, HeapTable *table,
					 SubexpireStatementParams *params, SubexpireRunWrites *writes)
{
	int64		budget = (int64) maintenance_work_mem * 1024 / sizeof(ItemPointerData);
	TableDueRows due = {table};
	uint64		expired = 0;
	uint64		round_expired;
	int64		not_taken = 0;

	do
	{
		collect_table(target, &due, params, writes, budget,
					  CurrentMemoryContext);
		round_expired = expire_listed(target, &due, due.ntids, params, writes,
									  &not_taken);
		expired += round_expired;
		if (due.tids != NULL)
			pfree(due.tids);
		due.tids = NULL;
	} while (!due.complete && round_expired > 0);
	return expired;
}

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
	SubexpireStatementParams params;
	int64		offered = 0;
	int64		expired = 0;
	ListCell   *lc;

	subexpire_set_params(&params, target, as_of, run_time, writes);
	if (rows->ranges != NULL)
		return subexpire_expire_next_range(target, &params, rows->ranges,
										   writes, more, &rows->not_taken);
	*more = false;
	foreach(lc, rows->tables)
	{
		TableDueRows *due = lfirst(lc);
		int64		count = Min(due->ntids - due->next, limit - offered);

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
		offered += count;
		expired += (int64) expire_listed(target, due, count, &params, writes,
										 &rows->not_taken);
		*more |= (due->next < due->ntids);
	}
	return expired;
}
