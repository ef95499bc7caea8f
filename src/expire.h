/*-------------------------------------------------------------------------
 *
 * expire.h
 *	  The statements that find and expire due rows.
 *
 * IDENTIFICATION
 *	  src/expire.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_EXPIRE_H
#define SUBEXPIRE_EXPIRE_H

#include "datatype/timestamp.h"

#include "statement.h"
#include "target.h"

/* What a run, or one of its steps, did. */
typedef struct SubexpireRunResult
{
	int64		expired_count;
	int64		skipped_locked;
	int64		kept_active;	/* updated, but kept due by a trigger */
	int64		skipped_failed; /* due, but their update failed */
} SubexpireRunResult;

/* The worker's list of due rows, in page order (see expire.c). */
typedef struct SubexpireDueRows SubexpireDueRows;

extern int64 subexpire_count_due(SubexpireTarget *target, TimestampTz as_of);
extern SubexpireRunResult subexpire_expire_due(SubexpireTarget *target,
											   TimestampTz as_of,
											   TimestampTz run_time,
											   SubexpireRunWrites *writes);
extern SubexpireDueRows *subexpire_due_rows_create(MemoryContext context);
extern bool subexpire_find_due_rows(SubexpireTarget *target, TimestampTz as_of,
									SubexpireDueRows *rows,
									const SubexpireRunWrites *writes);
extern int64 subexpire_expire_batch(SubexpireTarget *target, TimestampTz as_of,
									TimestampTz run_time, int64 limit,
									SubexpireDueRows *rows,
									SubexpireRunWrites *writes, bool *more);
extern bool subexpire_due_rows_all_taken(const SubexpireDueRows *rows);

#endif							/* SUBEXPIRE_EXPIRE_H */
