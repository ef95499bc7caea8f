/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  The extension's one struct in shared memory.
 *
 * IDENTIFICATION
 *	  src/shmem.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_SHMEM_H
#define SUBEXPIRE_SHMEM_H

#include "datatype/timestamp.h"
#include "pg_config_manual.h"
#include "storage/lwlock.h"
#include "storage/spin.h"

/* Buckets of the run-duration histogram: see src/stats.c for the bounds. */
#define SUBEXPIRE_DURATION_BUCKETS 17

/* The statistics of the runs (src/stats.c counts, monitoring reads). */
typedef struct SubexpireCounters
{
	int64		runs_total;
	int64		runs_failed;
	int64		expired_total;
	TimestampTz last_run_started_at;
	TimestampTz last_success_at;
	TimestampTz last_failure_at;
	TimestampTz last_expiry_at; /* last run that expired a row */
	int64		last_run_duration;	/* microseconds */
	int64		last_run_expired;
	char		last_error[256];
	int64		duration_counts[SUBEXPIRE_DURATION_BUCKETS];	/* not cumulative */
	double		duration_sum;	/* seconds */
	TimestampTz stats_reset;
	/* Added in 1.1, last, so that a 1.0 stats file is a prefix: */
	int64		last_run_longest_batch; /* microseconds; -1: none */
} SubexpireCounters;

/*
 * The statistics of one rule (src/stats.c), in one of a fixed number of
 * slots: a rule gets a slot when it first runs, and when none is free, the
 * one whose rule ran least recently.
 */
#define SUBEXPIRE_RULE_SLOTS 64

typedef struct SubexpireRuleCounters
{
	char		rule_name[NAMEDATALEN]; /* empty: a free slot */
	int64		runs_total;
	int64		runs_failed;
	int64		expired_total;
	int64		last_run_expired;
	TimestampTz last_run_at;
	TimestampTz last_success_at;
	TimestampTz last_failure_at;
	char		last_error[256];
} SubexpireRuleCounters;

/*
 * The statistics of the job in one database: each database has its own
 * (a database's monitoring shows its job, and no other's), in one of a
 * fixed number of slots (twice as many as subexpire.database may list),
 * taken when the database first counts a run; when none is free, the slot
 * of the database that counted least recently is reused.  A database that
 * has counted no run reads zeros.
 */
#define SUBEXPIRE_DATABASE_SLOTS 64

typedef struct SubexpireDatabaseCounters
{
	Oid			dboid;			/* InvalidOid: a free slot */
	bool		inherited;		/* read from the file of a library that
								 * counted the whole cluster's: the first
								 * database to use a slot takes it */
	TimestampTz last_used;
	SubexpireCounters counters;
	SubexpireRuleCounters rules[SUBEXPIRE_RULE_SLOTS];
} SubexpireDatabaseCounters;

/* How a run worker's attempt ended, as the scheduler needs to know. */
typedef enum SubexpireRunOutcome
{
	SUBEXPIRE_OUTCOME_NONE,		/* it exited before saying: see the log */
	SUBEXPIRE_OUTCOME_DONE,		/* ran (or found no catch-up due) */
	SUBEXPIRE_OUTCOME_FAILED,	/* the run failed; recorded in subexpire_runs */
	SUBEXPIRE_OUTCOME_RETRY,	/* the run failed waiting for a lock;
								 * recorded, and tried again within a minute */
	SUBEXPIRE_OUTCOME_NOT_READY /* the extension or target is missing */
} SubexpireRunOutcome;

/* What the scheduler and the run worker share (src/scheduler.c). */
typedef struct SubexpireWorkerState
{
	pid_t		scheduler_pid;
	pid_t		run_pid;		/* the run worker whose run is going on */
	TimestampTz next_run_at;	/* 0: none planned */
	SubexpireRunOutcome outcome;
	char		message[256];
} SubexpireWorkerState;

typedef struct SubexpireShared
{
	LWLock	   *lock;			/* databases and run_xacts */
	slock_t		mutex;			/* worker */
	SubexpireDatabaseCounters databases[SUBEXPIRE_DATABASE_SLOTS];
	SubexpireWorkerState worker;
	/* Expiry transactions in progress, one slot a backend (run_xacts.c). */
	int			run_xact_slots;
	TransactionId run_xacts[FLEXIBLE_ARRAY_MEMBER];
} SubexpireShared;

/* NULL in a backend of a server that did not preload the library. */
extern SubexpireShared *subexpire_shared;

extern void subexpire_shmem_init(void);
extern void subexpire_counters_clear(SubexpireCounters *counters);

#endif							/* SUBEXPIRE_SHMEM_H */
