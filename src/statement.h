/*-------------------------------------------------------------------------
 *
 * statement.h
 *	  The parts every expiry statement is made of: its parameters, its due
 *	  condition, its UPDATE and RETURNING lists, the counting of what it
 *	  expired, its bounded lock wait, and the rows that failed.
 *
 * IDENTIFICATION
 *	  src/statement.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_STATEMENT_H
#define SUBEXPIRE_STATEMENT_H

#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "storage/itemptr.h"

#include "target.h"

/*
 * Parameters shared by every statement: $1 the expired word, $2 the active
 * word, $3 the bound on the expiry column, $4 the run's time for the
 * updated-at column, $5 a row's ctid (only in the one-row UPDATE), $6 the
 * ctids of a batch's rows (only in the worker's batches), $7 the
 * transactions of this run that wrote rows (see SubexpireRunWrites), on a
 * distributed table (src/distributed.c) $8 and $9 the expiry and
 * distribution value a key range starts after, and $10 and $11 those it
 * ends at; then $12 and on, the values of the rule's set_columns.
 */
#define SUBEXPIRE_PARAM_CTID 4
#define SUBEXPIRE_PARAM_CTIDS 5
#define SUBEXPIRE_PARAM_WRITTEN 6
#define SUBEXPIRE_PARAM_FROM_EXPIRES 7
#define SUBEXPIRE_PARAM_FROM_KEY 8
#define SUBEXPIRE_PARAM_TO_EXPIRES 9
#define SUBEXPIRE_PARAM_TO_KEY 10
#define SUBEXPIRE_PARAM_SET 11
#define SUBEXPIRE_PARAM_MAX (SUBEXPIRE_PARAM_SET + SUBEXPIRE_MAX_SET_COLUMNS)

/* What a run has written so far (see statement.c). */
typedef struct SubexpireRunWrites SubexpireRunWrites;

typedef struct SubexpireStatementParams
{
	int			count;			/* SUBEXPIRE_PARAM_SET + the set columns */
	Oid			types[SUBEXPIRE_PARAM_MAX];
	Datum		values[SUBEXPIRE_PARAM_MAX];
	char		nulls[SUBEXPIRE_PARAM_MAX];
	bool		exclude_written;	/* $7 is not empty */
} SubexpireStatementParams;

/*
 * A kind of statement (the probe, the count, the common path's UPDATE),
 * prepared once per backend for each text and parameter types it is run
 * with, that is, for each rule, and kept until the rule or its target's
 * column types change.  A few are kept, for a few rules; more rules take
 * turns.
 */
#define SUBEXPIRE_CACHED_PLANS 8

typedef struct SubexpireCachedPlan
{
	char	   *sql;
	int			count;
	Oid			types[SUBEXPIRE_PARAM_MAX];
	SPIPlanPtr	plan;
} SubexpireCachedPlan;

typedef struct SubexpireCachedStatement
{
	SubexpireCachedPlan plans[SUBEXPIRE_CACHED_PLANS];
	int			next;			/* the one to replace next */
} SubexpireCachedStatement;

extern SubexpireRunWrites *subexpire_run_writes_create(MemoryContext context,
													   TimestampTz run_time);
extern void subexpire_run_writes_set_run_id(SubexpireRunWrites *writes,
											int64 run_id);
extern int64 subexpire_run_writes_kept(const SubexpireRunWrites *writes);
extern void subexpire_warn_kept_rows(const SubexpireTarget *target,
									 const SubexpireRunWrites *writes);
extern void subexpire_set_params(SubexpireStatementParams *params,
								 SubexpireTarget *target, TimestampTz as_of,
								 TimestampTz run_time,
								 const SubexpireRunWrites *writes);
extern void subexpire_append_due_condition(StringInfo sql,
										   SubexpireTarget *target,
										   bool exclude_written);
extern void subexpire_append_update_head(StringInfo sql,
										 SubexpireTarget *target,
										 const char *relation, bool only);
extern void subexpire_append_returning(StringInfo sql, SubexpireTarget *target);
extern uint64 subexpire_execute_update(SPIPlanPtr plan,
									   SubexpireTarget *target,
									   const char *what,
									   SubexpireRunWrites *writes,
									   SubexpireStatementParams *params,
									   uint64 *processed);
extern SPIPlanPtr subexpire_cached_plan(SubexpireCachedStatement *statement,
										const char *sql,
										const SubexpireStatementParams *params);

/* How a statement tried by subexpire_try_update() ended. */
typedef enum SubexpireUpdateOutcome
{
	SUBEXPIRE_UPDATED,			/* it ran */
	SUBEXPIRE_LOCKED,			/* it gave up waiting for a row lock */
	SUBEXPIRE_DEADLOCKED,		/* it was a deadlock's victim */
	SUBEXPIRE_ROW_FAILED		/* a row's update failed */
} SubexpireUpdateOutcome;

/* A timeout_ms for subexpire_try_update(): keep the lock_timeout in force. */
#define SUBEXPIRE_LOCK_WAIT_AS_IS (-1)

extern SubexpireUpdateOutcome subexpire_try_update(SPIPlanPtr plan,
												   SubexpireTarget *target,
												   SubexpireStatementParams *params,
												   SubexpireRunWrites *writes,
												   int timeout_ms,
												   uint64 *expired,
												   uint64 *processed,
												   char **row_error);
extern int64 subexpire_record_failed(SubexpireTarget *target,
									 SubexpireRunWrites *writes,
									 SubexpireStatementParams *params,
									 Oid relid, ItemPointer tid,
									 const char *from_where,
									 const char *error);
extern int64 subexpire_run_writes_failed(const SubexpireRunWrites *writes);
extern const char *subexpire_run_writes_first_error(const SubexpireRunWrites *writes);
extern bool subexpire_run_writes_failed_row(const SubexpireRunWrites *writes,
											Oid relid, ItemPointer tid);

#endif							/* SUBEXPIRE_STATEMENT_H */
