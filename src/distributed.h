/*-------------------------------------------------------------------------
 *
 * distributed.h
 *	  The expiry statements on a Citus hash-distributed table.
 *
 * IDENTIFICATION
 *	  src/distributed.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_DISTRIBUTED_H
#define SUBEXPIRE_DISTRIBUTED_H

#include "statement.h"

/* A run's key ranges of due rows (see distributed.c). */
typedef struct SubexpireKeyRanges SubexpireKeyRanges;

extern void subexpire_keep_worker_connections(void);
extern SubexpireKeyRanges *subexpire_key_ranges_create(MemoryContext context);
extern bool subexpire_find_key_ranges(SubexpireTarget *target,
									  SubexpireStatementParams *params,
									  SubexpireKeyRanges *ranges);
extern int64 subexpire_expire_next_range(SubexpireTarget *target,
										 SubexpireStatementParams *params,
										 SubexpireKeyRanges *ranges,
										 SubexpireRunWrites *writes,
										 bool *more, int64 *not_taken);
extern uint64 subexpire_expire_distributed_around_locks(SubexpireTarget *target,
														SubexpireStatementParams *params,
														SubexpireRunWrites *writes,
														bool may_wait,
														int64 *skipped);

#endif							/* SUBEXPIRE_DISTRIBUTED_H */
