/*-------------------------------------------------------------------------
 *
 * statement.c
 *	  The parts every expiry statement is made of: its parameters, its due
 *	  condition, its UPDATE and RETURNING lists, the counting of what it
 *	  expired, and its subtransaction, which tells a lock wait given up, a
 *	  deadlock and an error about a row apart.  The local paths (src/expire.c)
 *	  and the distributed ones (src/distributed.c) build their statements
 *	  from these, so that a row is due, counted and logged the same way on
 *	  every path.
 *
 * IDENTIFICATION
 *	  src/statement.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "events.h"
#include "failed_rows.h"
#include "rules.h"
#include "settings.h"
#include "statement.h"
#include "subxact.h"


/*
 * What a run has written so far: the (sub)transactions in which its
 * statements updated rows, and how many of those rows stayed due because
 * a BEFORE trigger kept their status.  The statements that come back for
 * due rows after the run has written some (another list of the worker,
 * the locked-rows path's later passes, the worker's last step) leave out
 * the row versions that those transactions wrote (their xmin), so that a
 * run considers each due row at most once: neither a trigger that keeps
 * or puts back the status, nor anything else, can make it come back for
 * the same rows without end.  And the rows whose update failed, which the
 * run leaves and records (src/failed_rows.c).
 */
struct SubexpireRunWrites
{
	MemoryContext context;		/* lives as long as the run */
	int64		run_id;			/* the run, and its time, for its events */
	TimestampTz run_time;
	int64		kept;			/* rows updated that stayed due */
	SubexpireFailedRows *failed;	/* rows whose update failed */
	int			nxids;
	int			maxxids;
	TransactionId *xids;
};

/* $7: the transactions of the run that wrote rows. */
static void
set_writes_param(SubexpireStatementParams *params, const SubexpireRunWrites *writes)
{
	int			n = writes ? writes->nxids : 0;
	Datum	   *xids = palloc(n * sizeof(Datum));

	for (int i = 0; i < n; i++)
		xids[i] = TransactionIdGetDatum(writes->xids[i]);
	params->values[SUBEXPIRE_PARAM_WRITTEN] = PointerGetDatum(construct_array(xids, n, XIDOID,
																			  sizeof(TransactionId),
																			  true, TYPALIGN_INT));
	params->nulls[SUBEXPIRE_PARAM_WRITTEN] = ' ';
	params->exclude_written = (n > 0);
}

SubexpireRunWrites *
subexpire_run_writes_create(MemoryContext context, TimestampTz run_time)
{
	SubexpireRunWrites *writes = MemoryContextAllocZero(context,
														sizeof(SubexpireRunWrites));

	writes->context = context;
	writes->run_time = run_time;
	writes->failed = subexpire_failed_rows_create(context);
	return writes;
}

/* The run's id, which its events name, once the run has one. */
void
subexpire_run_writes_set_run_id(SubexpireRunWrites *writes, int64 run_id)
{
	writes->run_id = run_id;
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
note_writes(SubexpireRunWrites *writes, SubexpireStatementParams *params, uint64 kept)
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

/*
 * The bound on the expiry column: as_of minus the rule's grace period,
 * computed once, as interval arithmetic does (months and days in the
 * session's time zone).
 */
typedef struct GraceBound
{
	TimestampTz as_of;
	const Interval *grace;
	TimestampTz bound;
} GraceBound;

static void
subtract_grace(void *arg)
{
	GraceBound *grace = arg;

	grace->bound = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
														   TimestampTzGetDatum(grace->as_of),
														   IntervalPGetDatum(grace->grace)));
}

static TimestampTz
expiry_bound(const SubexpireTarget *target, TimestampTz as_of)
{
	const SubexpireRule *rule = target->rule;
	GraceBound	grace = {as_of, &rule->grace_period, as_of};
	ErrorData  *error;

	if (rule->grace_period.time == 0 && rule->grace_period.day == 0 &&
		rule->grace_period.month == 0)
		return as_of;
	error = subexpire_try(subtract_grace, &grace);
	if (error != NULL || TIMESTAMP_NOT_FINITE(grace.bound))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("as_of minus %s is out of range",
						subexpire_rule_field(rule, "grace_period")),
				 errhint("Pass a later as_of or set a shorter %s.",
						 subexpire_rule_field(rule, "grace_period"))));
	return grace.bound;
}

void
subexpire_set_params(SubexpireStatementParams *params, SubexpireTarget *target,
					 TimestampTz as_of, TimestampTz run_time,
					 const SubexpireRunWrites *writes)
{
	TimestampTz bound = expiry_bound(target, as_of);

	params->count = SUBEXPIRE_PARAM_SET + target->nset;
	params->types[0] = target->status_type;
	params->types[1] = target->status_type;
	params->types[2] = target->expires_type;
	params->types[3] = OidIsValid(target->updated_type) ? target->updated_type : TIMESTAMPTZOID;
	params->types[SUBEXPIRE_PARAM_CTID] = TIDOID;
	params->types[SUBEXPIRE_PARAM_CTIDS] = TIDARRAYOID;
	params->types[SUBEXPIRE_PARAM_WRITTEN] = XIDARRAYOID;
	params->types[SUBEXPIRE_PARAM_FROM_EXPIRES] = target->expires_type;
	params->types[SUBEXPIRE_PARAM_TO_EXPIRES] = target->expires_type;
	/* A table that is not distributed has no key: any type will do. */
	params->types[SUBEXPIRE_PARAM_FROM_KEY] = params->types[SUBEXPIRE_PARAM_TO_KEY] =
		OidIsValid(target->key_type) ? target->key_type : INT4OID;

	params->values[0] = target->expired_word;
	params->values[1] = target->active_word;
	params->values[2] = subexpire_timestamp_for_column(bound, target->expires_type,
													   bound != as_of
													   ? "as_of minus the grace period"
													   : "as_of",
													   target->expires_column);
	params->values[3] = subexpire_timestamp_for_column(run_time, params->types[3],
													   "the run's time",
													   target->updated_column
													   ? target->updated_column
													   : "(none)");
	for (int i = SUBEXPIRE_PARAM_CTID; i < SUBEXPIRE_PARAM_SET; i++)
	{
		params->values[i] = (Datum) 0;
		params->nulls[i] = 'n';
	}
	memset(params->nulls, ' ', SUBEXPIRE_PARAM_CTID);
	for (int i = 0; i < target->nset; i++)
	{
		params->types[SUBEXPIRE_PARAM_SET + i] = target->set_types[i];
		params->values[SUBEXPIRE_PARAM_SET + i] = target->set_values[i];
		params->nulls[SUBEXPIRE_PARAM_SET + i] = target->set_nulls[i] ? 'n' : ' ';
	}
	set_writes_param(params, writes);
}

/*
 * "status = $2 AND expires_at <= $3", operators pinned to pg_catalog; with
 * exclude_written, leaving out the row versions that this run wrote ($7).
 * The first statement of a run has written nothing, so that the common
 * path stays one plain UPDATE.
 *
 * On a distributed table a row's xmin is its shard's, not comparable with
 * the coordinator's transactions: there each row is considered once by
 * key ranges instead (src/distributed.c).
 */
void
subexpire_append_due_condition(StringInfo sql, SubexpireTarget *target,
							   bool exclude_written)
{
	appendStringInfo(sql, "%s OPERATOR(pg_catalog.=) $2 AND %s OPERATOR(pg_catalog.<=) $3",
					 target->status_column, target->expires_column);
	if (exclude_written && !target->distributed)
		appendStringInfoString(sql, " AND NOT (xmin OPERATOR(pg_catalog.=) ANY ($7))");
}

/*
 * The RETURNING list of the UPDATEs: when the target counts by outcome,
 * whether each row got the expired word; when its rule emits events, each
 * row's expiry; and when it emits events or subexpire.log_expired asks for
 * one line per expired row, its key (the primary key's columns, or the
 * ctid of a table that has none).  Without any of them, none: the rows the
 * UPDATE processed are the rows it expired.
 */
void
subexpire_append_returning(StringInfo sql, SubexpireTarget *target)
{
	const char *sep = " RETURNING ";

	if (target->count_outcome)
	{
		appendStringInfo(sql, "%s%s OPERATOR(pg_catalog.=) $1", sep,
						 target->status_column);
		sep = ", ";
	}
	if (target->rule->emit_events)
	{
		appendStringInfo(sql, "%s%s", sep, target->expires_column);
		sep = ", ";
	}
	if (target->rule->emit_events || subexpire_log_expired)
		appendStringInfo(sql, "%s%s", sep, subexpire_key_columns(target));
}

/* Log one expired row, named by its key (the RETURNING columns from key_from). */
static void
log_expired_row(SubexpireTarget *target, HeapTuple row, TupleDesc desc,
				int key_from)
{
	StringInfoData key;

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

/* Does the target's UPDATE have a RETURNING list (see above)? */
static bool
returns_rows(const SubexpireTarget *target)
{
	return target->count_outcome || target->rule->emit_events ||
		subexpire_log_expired;
}

/*
 * Some of the rows an UPDATE returned: count those it expired (when the
 * target counts by outcome, a row counts only when it was given the
 * expired word; the others are kept, and have no event), write their
 * events into "events" when the rule emits them, and log them when
 * subexpire.log_expired is on.  Returns how many it expired; the rows are
 * freed.
 */
static uint64
take_returned_rows(SubexpireTarget *target, SPITupleTable *returned,
				   uint64 nrows, SubexpireRunWrites *writes,
				   SubexpireExpiredRows *events)
{
	TupleDesc	desc = returned->tupdesc;
	int			expires_col = target->count_outcome ? 2 : 1;
	int			key_from = expires_col + (events != NULL ? 1 : 0);
	uint64		expired = 0;

	for (uint64 i = 0; i < nrows; i++)
	{
		HeapTuple	row = returned->vals[i];
		bool		isnull;

		if (target->count_outcome &&
			!DatumGetBool(SPI_getbinval(row, desc, 1, &isnull)))
			continue;			/* kept due (a NULL is not the expired word) */
		expired++;
		if (events != NULL)
		{
			Assert(events->nrows < SUBEXPIRE_EVENTS_AT_ONCE);
			events->expires[events->nrows] = SPI_getbinval(row, desc, expires_col,
														   &isnull);
			for (int k = 0; k < target->nkeys; k++)
				events->keys[k][events->nrows] = SPI_getbinval(row, desc,
															   key_from + k,
															   &isnull);
			events->nrows++;
		}
		if (subexpire_log_expired)
			log_expired_row(target, row, desc, key_from);
	}
	if (events != NULL)
		subexpire_write_events(target, writes->run_id, writes->run_time,
							   events);
	SPI_freetuptable(returned);
	return expired;
}

/*
 * Execute one of the UPDATEs, prepared with the parameters of "params",
 * count the rows it expired, write their events when the rule emits them,
 * note what it wrote in "writes", and log the expired rows when
 * subexpire.log_expired is on.  Returns how many it expired, and in
 * *processed, when not NULL, how many rows it updated.
 *
 * An UPDATE that returns rows runs through a cursor: its portal keeps
 * them in a tuplestore, which spills to disk beyond work_mem, and they are
 * taken SUBEXPIRE_EVENTS_AT_ONCE at a time, so that a run over millions
 * of rows with events or log lines holds no more than that in memory.
 */
uint64
subexpire_execute_update(SPIPlanPtr plan, SubexpireTarget *target,
						 const char *what, SubexpireRunWrites *writes,
						 SubexpireStatementParams *params, uint64 *processed)
{
	uint64		updated = 0;
	uint64		expired = 0;

	if (!returns_rows(target))
	{
		int			rc = SPI_execute_plan(plan, params->values, params->nulls,
										  false, 0);

		if (rc != SPI_OK_UPDATE)
			elog(ERROR, "%s failed: %s", what, SPI_result_code_string(rc));
		updated = expired = SPI_processed;
	}
	else
	{
		SubexpireExpiredRows *events = NULL;
		Portal		portal;

		portal = SPI_cursor_open(NULL, plan, params->values, params->nulls,
								 false);
		for (;;)
		{
			/* At most as many rows as the events of one INSERT. */
			SPI_cursor_fetch(portal, true, SUBEXPIRE_EVENTS_AT_ONCE);
			if (SPI_processed == 0)
				break;
			if (target->rule->emit_events && events == NULL)
				events = subexpire_expired_rows_create(target);
			updated += SPI_processed;
			expired += take_returned_rows(target, SPI_tuptable, SPI_processed,
										  writes, events);
		}
		SPI_cursor_close(portal);
	}
	if (processed != NULL)
		*processed = updated;
	if (updated > 0)
		note_writes(writes, params, updated - expired);
	return expired;
}

/*
 * "UPDATE rel SET status = $1, updated_at = $4, plan = $12 WHERE ": the
 * rule's set_columns are parameters of their columns' types, so that no
 * value is ever pasted into the statement.
 */
void
subexpire_append_update_head(StringInfo sql, SubexpireTarget *target,
							 const char *relation, bool only)
{
	appendStringInfo(sql, "UPDATE %s%s SET %s = $1", only ? "ONLY " : "",
					 relation, target->status_column);
	if (target->updated_column != NULL)
		appendStringInfo(sql, ", %s = $4", target->updated_column);
	for (int i = 0; i < target->nset; i++)
		appendStringInfo(sql, ", %s = $%d", target->set_names[i],
						 SUBEXPIRE_PARAM_SET + i + 1);
	appendStringInfoString(sql, " WHERE ");
}

/*
 * The prepared plan for "sql", preparing it when it is not cached.  Plans
 * are re-planned with the actual parameter values on each run
 * (CURSOR_OPT_CUSTOM_PLAN): how many rows are due decides between an index
 * range scan and a sequential scan, and a generic plan would have to guess.
 */
SPIPlanPtr
subexpire_cached_plan(SubexpireCachedStatement *statement, const char *sql,
					  const SubexpireStatementParams *params)
{
	SubexpireCachedPlan *cached;
	SPIPlanPtr	plan;

	for (int i = 0; i < SUBEXPIRE_CACHED_PLANS; i++)
	{
		cached = &statement->plans[i];
		if (cached->plan != NULL &&
			cached->count == params->count &&
			strcmp(cached->sql, sql) == 0 &&
			memcmp(cached->types, params->types,
				   params->count * sizeof(Oid)) == 0)
			return cached->plan;
	}

	plan = SPI_prepare_cursor(sql, params->count, (Oid *) params->types,
							  CURSOR_OPT_CUSTOM_PLAN);
	if (plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep the plan of \"%s\"", sql);

	cached = &statement->plans[statement->next];
	statement->next = (statement->next + 1) % SUBEXPIRE_CACHED_PLANS;
	if (cached->plan != NULL)
	{
		SPI_freeplan(cached->plan);
		pfree(cached->sql);
	}
	cached->plan = plan;
	cached->sql = MemoryContextStrdup(TopMemoryContext, sql);
	cached->count = params->count;
	memcpy(cached->types, params->types, params->count * sizeof(Oid));
	return plan;
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

/* One statement, for subexpire_try(). */
typedef struct UpdateStep
{
	SPIPlanPtr	plan;
	SubexpireTarget *target;
	SubexpireStatementParams *params;
	SubexpireRunWrites *writes;
	int			timeout_ms;
	uint64		expired;
	uint64		processed;
} UpdateStep;

static void
update_step(void *arg)
{
	UpdateStep *step = arg;
	int			guc_level = NewGUCNestLevel();

	if (step->timeout_ms != SUBEXPIRE_LOCK_WAIT_AS_IS)
		subexpire_set_lock_wait(step->target, Max(step->timeout_ms, 1));
	step->expired = subexpire_execute_update(step->plan, step->target,
											 "expiring due rows",
											 step->writes, step->params,
											 &step->processed);
	AtEOXact_GUC(true, guc_level);
}

/*
 * Execute plan in a subtransaction, with lock_timeout set to timeout_ms
 * unless it is SUBEXPIRE_LOCK_WAIT_AS_IS.  When the statement ran, returns
 * SUBEXPIRE_UPDATED, with the rows it expired in *expired and those it
 * updated in *processed.  Otherwise its work is undone, and the return
 * says why: it gave up waiting for a row lock, or was a deadlock's victim
 * (only with a timeout: a statement that locks nothing it must wait for
 * fails with them), or an error about a row (src/failed_rows.c), whose
 * message is in *row_error.  Any other error propagates.
 */
SubexpireUpdateOutcome
subexpire_try_update(SPIPlanPtr plan, SubexpireTarget *target,
					 SubexpireStatementParams *params,
					 SubexpireRunWrites *writes, int timeout_ms,
					 uint64 *expired, uint64 *processed, char **row_error)
{
	UpdateStep	step = {plan, target, params, writes, timeout_ms, 0, 0};
	ErrorData  *error = subexpire_try(update_step, &step);
	SubexpireUpdateOutcome outcome;

	*expired = *processed = 0;
	*row_error = NULL;
	if (error == NULL)
	{
		*expired = step.expired;
		*processed = step.processed;
		return SUBEXPIRE_UPDATED;
	}
	if (timeout_ms != SUBEXPIRE_LOCK_WAIT_AS_IS &&
		error->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
		outcome = SUBEXPIRE_LOCKED;
	else if (timeout_ms != SUBEXPIRE_LOCK_WAIT_AS_IS &&
			 error->sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED)
		outcome = SUBEXPIRE_DEADLOCKED;
	else if (subexpire_is_row_error(error->sqlerrcode))
	{
		outcome = SUBEXPIRE_ROW_FAILED;
		*row_error = pstrdup(error->message);
	}
	else
		ReThrowError(error);
	FreeErrorData(error);
	return outcome;
}

/*
 * The update of the due rows "from_where" failed with "error" on every one
 * of them (a single row, or on a distributed table, rows that cannot be
 * told apart): leave them as they are, record them under the run, and
 * leave a local table's row, at tid of relid, out of the run's later
 * statements.  Returns how many it recorded: none for rows met before.
 */
int64
subexpire_record_failed(SubexpireTarget *target, SubexpireRunWrites *writes,
						SubexpireStatementParams *params, Oid relid,
						ItemPointer tid, const char *from_where,
						const char *error)
{
	return subexpire_record_failed_rows(writes->failed, target, writes->run_id,
										relid, tid, from_where, params->count,
										params->types, params->values,
										params->nulls, error);
}

int64
subexpire_run_writes_failed(const SubexpireRunWrites *writes)
{
	return subexpire_failed_rows_count(writes->failed);
}

const char *
subexpire_run_writes_first_error(const SubexpireRunWrites *writes)
{
	return subexpire_failed_rows_first_error(writes->failed);
}

/* Did the row at tid of relid fail earlier in the run? */
bool
subexpire_run_writes_failed_row(const SubexpireRunWrites *writes, Oid relid,
								ItemPointer tid)
{
	return subexpire_failed_row_known(writes->failed, relid, tid);
}
