/*-------------------------------------------------------------------------
 *
 * distributed.c
 *	  The expiry statements on a Citus hash-distributed table: key ranges
 *	  instead of ctids, halved around locked rows.
 *
 * On a distributed table the common path is the same plain UPDATE as on a
 * local one, which Citus runs on every shard at once; its lock wait
 * reaches the shards (subexpire_set_lock_wait()).  What the local paths do
 * with ctids and SKIP LOCKED cannot be done there: a ctid is per shard,
 * and Citus runs SKIP LOCKED only on one shard at a time.  So:
 *
 * - The worker's batches are key ranges: one statement lists the due rows
 *   ordered by (expiry, distribution column), and every batch_size-th of
 *   them ends a range.  Each batch is one plain multi-shard UPDATE of the
 *   due rows in its range, which Citus pushes down to the shards; each row
 *   is in one range, so a run considers it once, whatever a trigger does.
 * - A range whose UPDATE gives up waiting for a locked row, or fails on a
 *   row (src/failed_rows.c), is halved, and each half tried again, down to
 *   single rows, all within one budget of subexpire.lock_wait for the
 *   waits (each try waits at least 1 ms): every row that nobody holds is
 *   expired, the rows still locked are left, and the rows that fail are
 *   recorded and left, found in a number of tries that grows with the
 *   logarithm of the range's size.  A failing row is met again by the
 *   run's later statements (no ctid can leave it out), and recorded once.
 * - When the common path gives up (expire_subscriptions(), and the
 *   worker's last step), the run goes through the due rows in ranges, so,
 *   then once more through the rows left locked, and counts those still
 *   due as skipped.  Unlike on a local table it cannot tell a row locked
 *   by another run in progress from one an application holds: both
 *   count.
 *
 * IDENTIFICATION
 *	  src/distributed.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "distributed.h"
#include "settings.h"

/* A due row, as the end of a range: its expiry and distribution value. */
typedef struct RangeEnd
{
	Datum		expires;
	Datum		key;
	int64		rows;			/* due rows in the range it ends, listed */
} RangeEnd;

/* A range of due rows that stayed locked: (from, to], or up to "to". */
typedef struct LockedRange
{
	bool		has_from;
	RangeEnd	from;
	RangeEnd	to;
} LockedRange;

/* Due rows in (expiry, key) order, or the ends of ranges of them. */
typedef struct RangeEnds
{
	RangeEnd   *ends;
	int			nends;
	int			maxends;
} RangeEnds;

struct SubexpireKeyRanges
{
	MemoryContext context;		/* lives as long as the run */
	RangeEnds	list;
	int			next;			/* the first range not yet expired */
	bool		listed;			/* made, once a run */
};

/*
 * For a run of many transactions (the worker's): keep this session's
 * connections to the workers from one transaction to the next.  Citus
 * keeps one a worker by default, and a batch's multi-shard UPDATE opens
 * up to citus.max_adaptive_executor_pool_size of them: opening them again
 * for every batch more than doubled the run's time (test/bench/citus.sh).
 * A session setting, for the run worker's session only.
 */
void
subexpire_keep_worker_connections(void)
{
	const char *pool = GetConfigOption("citus.max_adaptive_executor_pool_size",
									   true, false);

	if (pool != NULL)
		SetConfigOption("citus.max_cached_conns_per_worker", pool,
						PGC_USERSET, PGC_S_SESSION);
}

SubexpireKeyRanges *
subexpire_key_ranges_create(MemoryContext context)
{
	SubexpireKeyRanges *ranges = MemoryContextAllocZero(context,
														sizeof(SubexpireKeyRanges));

	ranges->context = context;
	return ranges;
}

/*
 * " AND (expiry, key) > ($8, $9) AND (expiry, key) <= ($10, $11)", without
 * the bound that is NULL, written with the bare expiry column as well, so
 * that the shards' index range scans serve it.
 */
static void
append_range_condition(StringInfo sql, SubexpireTarget *target,
					   const RangeEnd *from, const RangeEnd *to)
{
	if (from != NULL)
		appendStringInfo(sql, " AND %s OPERATOR(pg_catalog.>=) $8 AND (%s OPERATOR(pg_catalog.>) $8 OR %s OPERATOR(pg_catalog.>) $9)",
						 target->expires_column, target->expires_column,
						 target->key_column);
	if (to != NULL)
		appendStringInfo(sql, " AND %s OPERATOR(pg_catalog.<=) $10 AND (%s OPERATOR(pg_catalog.<) $10 OR %s OPERATOR(pg_catalog.<=) $11)",
						 target->expires_column, target->expires_column,
						 target->key_column);
}

static void
set_range_params(SubexpireStatementParams *params, const RangeEnd *from,
				 const RangeEnd *to)
{
	params->nulls[SUBEXPIRE_PARAM_FROM_EXPIRES] = from ? ' ' : 'n';
	params->nulls[SUBEXPIRE_PARAM_FROM_KEY] = from ? ' ' : 'n';
	params->nulls[SUBEXPIRE_PARAM_TO_EXPIRES] = to ? ' ' : 'n';
	params->nulls[SUBEXPIRE_PARAM_TO_KEY] = to ? ' ' : 'n';
	params->values[SUBEXPIRE_PARAM_FROM_EXPIRES] = from ? from->expires : (Datum) 0;
	params->values[SUBEXPIRE_PARAM_FROM_KEY] = from ? from->key : (Datum) 0;
	params->values[SUBEXPIRE_PARAM_TO_EXPIRES] = to ? to->expires : (Datum) 0;
	params->values[SUBEXPIRE_PARAM_TO_KEY] = to ? to->key : (Datum) 0;
}

/* A copy of a listed row (expiry, key), in the current memory context. */
static RangeEnd
copy_end(SubexpireTarget *target, HeapTuple row, TupleDesc desc, int64 rows)
{
	RangeEnd	end;
	bool		isnull;
	int16		len;
	bool		byval;

	get_typlenbyval(target->expires_type, &len, &byval);
	end.expires = datumCopy(SPI_getbinval(row, desc, 1, &isnull), byval, len);
	get_typlenbyval(target->key_type, &len, &byval);
	end.key = datumCopy(SPI_getbinval(row, desc, 2, &isnull), byval, len);
	end.rows = rows;
	return end;
}

static void
add_end(RangeEnds *list, RangeEnd end, MemoryContext context)
{
	if (list->nends == list->maxends)
	{
		list->maxends = Max(64, list->maxends * 2);
		list->ends = list->ends == NULL
			? MemoryContextAlloc(context, list->maxends * sizeof(RangeEnd))
			: repalloc(list->ends, list->maxends * sizeof(RangeEnd));
	}
	list->ends[list->nends++] = end;
}

/*
 * List the due rows between from and to (either NULL: no bound) in
 * (expiry, key) order, through a cursor, keeping every rows_per_end-th
 * and the last in "list", in "context", each with how many rows it ends.
 */
static void
list_due_rows(SubexpireTarget *target, SubexpireStatementParams *params,
			  const RangeEnd *from, const RangeEnd *to, int64 rows_per_end,
			  RangeEnds *list, MemoryContext context)
{
	StringInfoData sql;
	Portal		portal;
	int64		since_end = 0;
	RangeEnd	last = {0};
	MemoryContext old;

	set_range_params(params, from, to);
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s, %s FROM %s WHERE ", target->expires_column,
					 target->key_column, target->qualified_name);
	subexpire_append_due_condition(&sql, target, false);
	append_range_condition(&sql, target, from, to);
	appendStringInfo(&sql, " ORDER BY %s, %s", target->expires_column,
					 target->key_column);
	portal = SPI_cursor_open_with_args(NULL, sql.data, params->count,
									   params->types, params->values,
									   params->nulls, true, 0);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, 10000);
		if (SPI_processed == 0)
			break;
		old = MemoryContextSwitchTo(context);
		for (uint64 i = 0; i < SPI_processed; i++)
			if (++since_end == rows_per_end)
			{
				add_end(list, copy_end(target, SPI_tuptable->vals[i],
									   SPI_tuptable->tupdesc, since_end),
						context);
				since_end = 0;
			}
		if (since_end > 0)
			last = copy_end(target, SPI_tuptable->vals[SPI_processed - 1],
							SPI_tuptable->tupdesc, 0);
		MemoryContextSwitchTo(old);
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	if (since_end > 0)
	{
		last.rows = since_end;
		add_end(list, last, context);
	}
	pfree(sql.data);
}

/*
 * The worker's list: key ranges of subexpire.batch_size due rows each.
 * Made once a run, in a transaction that locks nothing; the run's later
 * lists (src/expire.c) find it used up.
 */
bool
subexpire_find_key_ranges(SubexpireTarget *target,
						  SubexpireStatementParams *params,
						  SubexpireKeyRanges *ranges)
{
	if (ranges->listed)
		return false;
	ranges->listed = true;
	list_due_rows(target, params, NULL, NULL, subexpire_batch_size,
				  &ranges->list, ranges->context);
	return ranges->list.nends > 0;
}

/* Do two listed rows have the same expiry and key? */
static bool
same_end(SubexpireTarget *target, const RangeEnd *a, const RangeEnd *b)
{
	int16		len;
	bool		byval;

	get_typlenbyval(target->expires_type, &len, &byval);
	if (!datumIsEqual(a->expires, b->expires, byval, len))
		return false;
	get_typlenbyval(target->key_type, &len, &byval);
	return datumIsEqual(a->key, b->key, byval, len);
}

/* The rest of the lock-wait budget that ends at deadline, at least 1 ms. */
static int
remaining_ms(TimestampTz deadline)
{
	return (int) Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
													 deadline), 1);
}

/*
 * "table WHERE <due> AND <between from and to>": the due rows of a range.
 */
static char *
range_from_where(SubexpireTarget *target, const RangeEnd *from,
				 const RangeEnd *to)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql, "%s WHERE ", target->qualified_name);
	subexpire_append_due_condition(&sql, target, false);
	append_range_condition(&sql, target, from, to);
	return sql.data;
}

/*
 * One UPDATE of the due rows between from and to, waiting for a locked
 * row until deadline at most (and at least 1 ms).  Returns how it ended
 * (see subexpire_try_update()), with how many rows it expired in
 * *expired, and the error of a row that failed in *row_error.  When it did
 * not run, its work is undone.
 */
static SubexpireUpdateOutcome
try_range(SubexpireTarget *target, SubexpireStatementParams *params,
		  const RangeEnd *from, const RangeEnd *to,
		  SubexpireRunWrites *writes, TimestampTz deadline, uint64 *expired,
		  char **row_error)
{
	StringInfoData sql;
	SPIPlanPtr	plan;
	uint64		processed;
	SubexpireUpdateOutcome outcome;

	set_range_params(params, from, to);
	initStringInfo(&sql);
	subexpire_append_update_head(&sql, target, target->qualified_name, false);
	subexpire_append_due_condition(&sql, target, false);
	append_range_condition(&sql, target, from, to);
	subexpire_append_returning(&sql, target);
	plan = SPI_prepare_cursor(sql.data, params->count, params->types,
							  CURSOR_OPT_CUSTOM_PLAN);
	if (plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql.data,
			 SPI_result_code_string(SPI_result));
	outcome = subexpire_try_update(plan, target, params, writes,
								   remaining_ms(deadline), expired,
								   &processed, row_error);
	SPI_freeplan(plan);
	pfree(sql.data);
	return outcome;
}

/*
 * Leave the listed rows of (from, to], which are one row or rows tied on
 * expiry and key, whose UPDATE did not run: record them as failed (with
 * row_error), or append them to *locked (LockedRange), in "context".
 */
static void
leave_rows(SubexpireTarget *target, SubexpireStatementParams *params,
		   const RangeEnd *from, const RangeEnd *to,
		   SubexpireUpdateOutcome outcome, const char *row_error,
		   SubexpireRunWrites *writes, List **locked, MemoryContext context)
{
	LockedRange *range;
	MemoryContext old;

	if (outcome == SUBEXPIRE_ROW_FAILED)
	{
		set_range_params(params, from, to);
		(void) subexpire_record_failed(target, writes, params, InvalidOid, NULL,
									   range_from_where(target, from, to),
									   row_error);
		return;
	}
	range = MemoryContextAllocZero(context, sizeof(LockedRange));
	range->has_from = (from != NULL);
	if (from != NULL)
		range->from = *from;
	range->to = *to;
	old = MemoryContextSwitchTo(context);
	*locked = lappend(*locked, range);
	MemoryContextSwitchTo(old);
}

/*
 * The listed due rows rows->ends[lo..hi], the first of them after "from",
 * whose UPDATE did not run ("outcome" says why): one row, or rows tied on
 * expiry and key, are left (leave_rows()); more are halved, and each half
 * tried in turn, down to single rows, from the one list.  Returns how many
 * rows it expired.
 */
static uint64
halve_listed(SubexpireTarget *target, SubexpireStatementParams *params,
			 const RangeEnd *from, RangeEnds *rows, int lo, int hi,
			 SubexpireUpdateOutcome outcome, const char *row_error,
			 SubexpireRunWrites *writes, TimestampTz deadline,
			 List **locked, MemoryContext context)
{
	int			mid = lo + (hi - lo + 1) / 2 - 1;
	uint64		total = 0;

	CHECK_FOR_INTERRUPTS();
	if (lo == hi || same_end(target, &rows->ends[lo], &rows->ends[hi]))
	{
		leave_rows(target, params, from, &rows->ends[hi], outcome, row_error,
				   writes, locked, context);
		return 0;
	}
	for (int half = 0; half < 2; half++)
	{
		int			first = (half == 0) ? lo : mid + 1;
		int			last = (half == 0) ? mid : hi;
		const RangeEnd *after = (first == lo) ? from : &rows->ends[first - 1];
		uint64		expired;
		char	   *error;
		SubexpireUpdateOutcome tried;

		tried = try_range(target, params, after, &rows->ends[last], writes,
						  deadline, &expired, &error);
		if (tried == SUBEXPIRE_UPDATED)
			total += expired;
		else
			total += halve_listed(target, params, after, rows, first, last,
								  tried, error, writes, deadline, locked,
								  context);
	}
	return total;
}

/*
 * Expire the due rows between from and to that nobody else holds locked:
 * one UPDATE; when it gives up waiting for a locked row or fails on a
 * row, the due rows there are listed, once, and the halves of the list
 * tried in turn, down to single rows (halve_listed()).  The rows that
 * stayed locked are appended to *locked (LockedRange), in "context";
 * those that failed are recorded and left as they were
 * (src/failed_rows.c).  Returns how many rows it expired.
 */
static uint64
expire_halving(SubexpireTarget *target, SubexpireStatementParams *params,
			   const RangeEnd *from, const RangeEnd *to,
			   SubexpireRunWrites *writes, TimestampTz deadline,
			   List **locked, MemoryContext context)
{
	RangeEnds	rows = {0};
	uint64		expired;
	char	   *row_error;
	SubexpireUpdateOutcome outcome;

	CHECK_FOR_INTERRUPTS();
	outcome = try_range(target, params, from, to, writes, deadline, &expired,
						&row_error);
	if (outcome == SUBEXPIRE_UPDATED)
		return expired;

	list_due_rows(target, params, from, to, 1, &rows, CurrentMemoryContext);
	if (rows.nends == 0)
		return 0;
	return halve_listed(target, params, from, &rows, 0, rows.nends - 1,
						outcome, row_error, writes, deadline, locked, context);
}

/*
 * One batch of the worker's run: the next range, waiting for locked rows
 * at most subexpire.lock_wait in all, and leaving the rows still locked
 * (the run's last step comes back for them).  *not_taken grows by the
 * listed rows the batch neither updated nor found failing; *more says
 * whether ranges are left.
 */
int64
subexpire_expire_next_range(SubexpireTarget *target,
							SubexpireStatementParams *params,
							SubexpireKeyRanges *ranges,
							SubexpireRunWrites *writes, bool *more,
							int64 *not_taken)
{
	int			i = ranges->next++;
	RangeEnd   *to = &ranges->list.ends[i];
	RangeEnd   *from = (i > 0) ? &ranges->list.ends[i - 1] : NULL;
	int64		kept_before = subexpire_run_writes_kept(writes);
	int64		failed_before = subexpire_run_writes_failed(writes);
	List	   *locked = NIL;
	uint64		expired;
	int64		taken;

	expired = expire_halving(target, params, from, to, writes,
							 TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														 subexpire_lock_wait),
							 &locked, CurrentMemoryContext);
	taken = (int64) expired + subexpire_run_writes_kept(writes) - kept_before +
		subexpire_run_writes_failed(writes) - failed_before;
	*not_taken += Max(0, to->rows - taken);
	*more = (ranges->next < ranges->list.nends);
	return (int64) expired;
}

/* How many due rows are left in a range. */
static int64
count_due_range(SubexpireTarget *target, SubexpireStatementParams *params,
				const LockedRange *range)
{
	StringInfoData sql;
	bool		isnull;
	int64		count;
	int			rc;

	set_range_params(params, range->has_from ? &range->from : NULL, &range->to);
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT pg_catalog.count(*) FROM %s WHERE ",
					 target->qualified_name);
	subexpire_append_due_condition(&sql, target, false);
	append_range_condition(&sql, target,
						   range->has_from ? &range->from : NULL, &range->to);
	rc = SPI_execute_with_args(sql.data, params->count, params->types,
							   params->values, params->nulls, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "counting locked rows failed: %s",
			 SPI_result_code_string(rc));
	count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, &isnull));
	SPI_freetuptable(SPI_tuptable);
	pfree(sql.data);
	return count;
}

/*
 * The locked-rows path on a distributed table (see the file header): the
 * due rows in ranges of subexpire.batch_size, halved around locked rows,
 * all within one lock-wait budget of subexpire.lock_wait; then once more
 * the rows left locked, waiting for them while the budget lasts when
 * may_wait (not after a deadlock); and those still due counted in
 * *skipped.
 */
uint64
subexpire_expire_distributed_around_locks(SubexpireTarget *target,
										  SubexpireStatementParams *params,
										  SubexpireRunWrites *writes,
										  bool may_wait, int64 *skipped)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   subexpire_lock_wait);
	RangeEnds	ends = {0};
	List	   *locked = NIL;
	List	   *still_locked = NIL;
	uint64		expired = 0;
	ListCell   *lc;

	list_due_rows(target, params, NULL, NULL, subexpire_batch_size, &ends,
				  CurrentMemoryContext);
	for (int i = 0; i < ends.nends; i++)
		expired += expire_halving(target, params,
								  i > 0 ? &ends.ends[i - 1] : NULL,
								  &ends.ends[i], writes, deadline, &locked,
								  CurrentMemoryContext);

	*skipped = 0;
	if (!may_wait)
		deadline = GetCurrentTimestamp();
	foreach(lc, locked)
	{
		LockedRange *range = lfirst(lc);

		/* Released now, or failing: as any other range. */
		expired += expire_halving(target, params,
								  range->has_from ? &range->from : NULL,
								  &range->to, writes, deadline, &still_locked,
								  CurrentMemoryContext);
	}
	foreach(lc, still_locked)
	{
		LockedRange *range = lfirst(lc);

		*skipped += count_due_range(target, params, range);
	}
	return expired;
}
