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

/* What one rule of a run did, for its statistics. */
typedef struct SubexpireRuleCount
{
	char		rule_name[NAMEDATALEN];
	int64		expired;
	const char *error;			/* NULL: the rule succeeded */
} SubexpireRuleCount;

extern void subexpire_stats_count_run(TimestampTz started_at,
									  TimestampTz finished_at,
									  int64 expired, const char *error,
									  int64 longest_batch,
									  const SubexpireRuleCount *rules,
									  int nrules);
extern void subexpire_stats_count_at_commit(TimestampTz started_at,
											TimestampTz finished_at,
											int64 expired,
											const SubexpireRuleCount *rules,
											int nrules);
extern int	subexpire_stats_read_rules(SubexpireRuleCounters *rules);
extern SubexpireCounters subexpire_stats_read(void);
extern void subexpire_stats_clear(void);
extern double subexpire_duration_bound(int bucket);

#endif							/* SUBEXPIRE_STATS_H */
