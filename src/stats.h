/*-------------------------------------------------------------------------
 *
 * stats.h
 *	  Statistics of the runs, in shared memory.
 *
 * IDENTIFICATION
 *	  src/stats.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_STATS_H
#define SUBEXPIRE_STATS_H

#include "datatype/timestamp.h"

#include "shmem.h"

extern void subexpire_stats_count_run(TimestampTz started_at,
									  TimestampTz finished_at,
									  int64 expired, const char *error,
									  int64 longest_batch);
extern void subexpire_stats_count_at_commit(TimestampTz started_at,
											TimestampTz finished_at,
											int64 expired);
extern SubexpireCounters subexpire_stats_read(void);
extern void subexpire_stats_clear(void);
extern double subexpire_duration_bound(int bucket);

#endif							/* SUBEXPIRE_STATS_H */
