/*-------------------------------------------------------------------------
 *
 * subexpire.h
 *	  Declarations shared by the files of the subexpire extension: the
 *	  settings, the description of the target table, the expiry core and
 *	  the run records.
 *
 * IDENTIFICATION
 *	  src/subexpire.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_H
#define SUBEXPIRE_H

#include "access/attnum.h"
#include "datatype/timestamp.h"
#include "nodes/pg_list.h"
#include "utils/elog.h"

/* Settings (src/subexpire.c); see DESIGN.md for what each one means. */
extern char *subexpire_target_table;
extern char *subexpire_status_column;
extern char *subexpire_expires_column;
extern char *subexpire_updated_column;
extern char *subexpire_active_status;
extern char *subexpire_expired_status;
extern int	subexpire_grace_period;
extern int	subexpire_batch_size;
extern int	subexpire_max_expired_per_run;
extern int	subexpire_lock_wait;
extern int	subexpire_history_retention;
extern int	subexpire_alert_no_expiry_after;
extern int	subexpire_alert_max_expired;
extern bool subexpire_log_expired;
extern bool subexpire_enabled;
extern char *subexpire_schedule;
extern char *subexpire_timezone;
extern char *subexpire_database;
extern char *subexpire_role;
extern bool subexpire_catch_up;

extern bool subexpire_zone_in_database(const char *name);

/*
 * The target table as the current settings describe it, checked against the
 * catalog (src/target.c).  The words and bounds are Datums of the columns'
 * own types, so that the statements compare like with like and an index on
 * the columns serves them.
 */
typedef struct SubexpireTarget
{
	Oid			relid;
	char		relkind;
	AttrNumber	status_attnum;
	AttrNumber	expires_attnum;
	AttrNumber	updated_attnum; /* InvalidAttrNumber when none */
	char	   *qualified_name; /* quoted, ready to paste into SQL */
	char	   *status_column;	/* quoted */
	char	   *expires_column; /* quoted */
	char	   *updated_column; /* quoted, or NULL when none is configured */
	Oid			status_type;
	Oid			expires_type;
	Oid			updated_type;
	Datum		active_word;
	Datum		expired_word;
	char	   *key_columns;	/* for the log; see subexpire_key_columns() */
	Oid			owner;			/* the statements run as this role */
	bool		count_outcome;	/* BEFORE ROW triggers may change what is
								 * written: count rows by their new status */
	/* What subexpire_close_target() restores. */
	Oid			saved_userid;
	int			saved_sec_context;
	int			guc_level;
} SubexpireTarget;

/* What the caller of subexpire_open_target() does with the target. */
typedef enum SubexpireAccess
{
	SUBEXPIRE_FOR_RUN,			/* expires rows: needs SELECT and UPDATE */
	SUBEXPIRE_FOR_COUNT,		/* counts due rows (a dry run): needs SELECT */
	SUBEXPIRE_FOR_MONITOR		/* monitoring: needs no access to the rows */
} SubexpireAccess;

extern SubexpireTarget *subexpire_open_target(SubexpireAccess access);
extern void subexpire_close_target(SubexpireTarget *target);
extern char *subexpire_relation_name(Oid relid);
extern Oid	subexpire_relation_owner(Oid relid);
extern Datum subexpire_timestamp_for_column(TimestampTz ts, Oid column_type,
											const char *what,
											const char *column);
extern const char *subexpire_key_columns(SubexpireTarget *target);

/* A step in a subtransaction, its error caught (src/subxact.c). */
extern ErrorData *subexpire_try(void (*step) (void *arg), void *arg);

/* What one run did (src/expire.c). */
typedef struct SubexpireRunResult
{
	int64		expired_count;
	int64		skipped_locked;
	int64		kept_active;	/* updated, but kept due by a trigger */
} SubexpireRunResult;

typedef struct SubexpireRunWrites SubexpireRunWrites;
extern SubexpireRunWrites *subexpire_run_writes_create(MemoryContext context);
extern int64 subexpire_run_writes_kept(const SubexpireRunWrites *writes);
extern void subexpire_warn_kept_rows(const SubexpireTarget *target,
									 const SubexpireRunWrites *writes);
extern int64 subexpire_count_due(SubexpireTarget *target, TimestampTz as_of);
extern SubexpireRunResult subexpire_expire_due(SubexpireTarget *target,
											   TimestampTz as_of,
											   TimestampTz run_time,
											   SubexpireRunWrites *writes);
typedef struct SubexpireDueRows SubexpireDueRows;
extern SubexpireDueRows *subexpire_due_rows_create(MemoryContext context);
extern bool subexpire_find_due_rows(SubexpireTarget *target, TimestampTz as_of,
									SubexpireDueRows *rows,
									const SubexpireRunWrites *writes);
extern int64 subexpire_expire_batch(SubexpireTarget *target, TimestampTz as_of,
									TimestampTz run_time, int64 limit,
									SubexpireDueRows *rows,
									SubexpireRunWrites *writes, bool *more);
extern bool subexpire_due_rows_all_taken(const SubexpireDueRows *rows);
extern void subexpire_check_max_expired(int64 count, TimestampTz as_of);

/* Run records in the subexpire_runs table (src/runs.c). */
extern int64 subexpire_record_run(const char *trigger, TimestampTz as_of,
								  TimestampTz started_at,
								  TimestampTz finished_at,
								  const char *status,
								  const SubexpireRunResult *result,
								  const char *error);
extern void subexpire_update_run(int64 run_id,
								 const SubexpireRunResult *added,
								 const char *status, const char *error,
								 int64 longest_batch);
extern int64 subexpire_fail_interrupted_runs(void);
extern TimestampTz subexpire_last_scheduled_success(void);

/*
 * Versions of the extension's SQL objects (pg_extension.extversion), as
 * numbers that compare as versions do: major * 100 + minor.  The library
 * serves the SQL objects of every version from 1.0 to SUBEXPIRE_SQL_VERSION,
 * its own (subexpire.control's default_version), so that it keeps working
 * between the installation of a new library and ALTER EXTENSION subexpire
 * UPDATE.
 */
#define SUBEXPIRE_SQL_1_0 100
#define SUBEXPIRE_SQL_1_1 101	/* subexpire_runs.longest_batch,
								 * subexpire_stats.last_run_longest_batch */
#define SUBEXPIRE_SQL_1_2 102	/* subexpire_runs.kept_active */
#define SUBEXPIRE_SQL_VERSION SUBEXPIRE_SQL_1_2
#define SUBEXPIRE_SQL_VERSION_NAME "1.2"

extern int	subexpire_sql_version(char **version);

extern void subexpire_announce_run(const char *trigger, int64 run_id,
								   TimestampTz as_of, TimestampTz started_at,
								   TimestampTz finished_at,
								   const SubexpireRunResult *result);
extern void subexpire_prune_runs(void);

/* The WAL writer woken while a batch runs (src/walwriter.c). */
extern void subexpire_start_waking_wal_writer(void);
extern void subexpire_stop_waking_wal_writer(void);

/* The background worker (src/worker.c). */
extern void subexpire_register_worker(void);
extern void subexpire_worker_status(int *pid, TimestampTz *next_run_at);

/* Statistics (src/stats.c). */
extern void subexpire_stats_init(void);
extern void subexpire_stats_count_run(TimestampTz started_at,
									  TimestampTz finished_at,
									  int64 expired, const char *error);
extern void subexpire_stats_count_worker_run(TimestampTz started_at,
											 TimestampTz finished_at,
											 int64 expired, const char *error,
											 int64 longest_batch);
extern void subexpire_stats_run_succeeded_in_xact(TimestampTz started_at,
												  TimestampTz finished_at,
												  int64 expired);
extern TimestampTz subexpire_stats_reset_time(void);
extern void subexpire_register_run_xact(void);
extern bool subexpire_is_run_xact(TransactionId xid);
extern void subexpire_stats_for_health(TimestampTz *last_success_at,
									   TimestampTz *last_failure_at,
									   TimestampTz *last_run_started_at,
									   TimestampTz *last_expiry_at,
									   int64 *last_run_expired,
									   char *last_error, Size last_error_size);

#endif							/* SUBEXPIRE_H */
