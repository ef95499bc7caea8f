/*-------------------------------------------------------------------------
 *
 * records.h
 *	  Run records: one row in subexpire_runs for each run.
 *
 * IDENTIFICATION
 *	  src/records.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_RECORDS_H
#define SUBEXPIRE_RECORDS_H

#include "datatype/timestamp.h"

#include "expire.h"

extern int64 subexpire_reserve_run_id(void);
extern int64 subexpire_record_run(int64 run_id, const char *trigger,
								  TimestampTz as_of,
								  TimestampTz started_at,
								  TimestampTz finished_at,
								  const char *status,
								  const SubexpireRunResult *result,
								  const char *error);
extern void subexpire_update_run(int64 run_id,
								 const SubexpireRunResult *added,
								 const char *status, const char *error,
								 int64 longest_batch, bool stopped_early);
extern void subexpire_record_rule_run(int64 run_id, const char *rule_name,
									  const char *target_table,
									  const SubexpireRunResult *result,
									  const char *error);
extern void subexpire_update_rule_run(int64 run_id, const char *rule_name,
									  const SubexpireRunResult *added,
									  const char *error);
extern int	subexpire_runs_stopped_early(int last);
extern int64 subexpire_last_run_failed_rows(int64 *run_id);
extern int64 subexpire_fail_interrupted_runs(void);
extern TimestampTz subexpire_last_scheduled_success(void);
extern void subexpire_prune_runs(void);

#endif							/* SUBEXPIRE_RECORDS_H */
