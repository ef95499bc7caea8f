/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The background worker that runs the job on subexpire.schedule.
 *
 * Two kinds of process.  The scheduler, one per cluster, started by the
 * postmaster once recovery has finished (so a standby never runs the job
 * and a promoted one starts it), sleeps until the next scheduled time, then
 * starts a run worker and waits for it.  It is connected to no database,
 * only to the shared catalogs, so that it can check that the database and
 * the role named by the settings exist before each run, and a missing one
 * is logged once and retried, never a crash loop.  Because each run starts
 * a new process, a reload that changes subexpire.database or subexpire.role
 * needs no restart: the next run connects as the settings then say.
 *
 * A run worker connects to subexpire.database as subexpire.role, marks as
 * failed the runs that a crash left "running", and runs the job in batches
 * of subexpire.batch_size rows, one transaction each, updating its
 * subexpire_runs record in the same transaction as each batch, so that the
 * record is true after a crash.  Its last transaction comes back for the
 * rows that were locked, with the bounded wait of expire_subscriptions().
 * At start-up (and when subexpire.enabled is turned back on) the first run
 * worker only checks whether a scheduled time passed since the last
 * successful run, and then runs once as 'catch-up'.
 *
 * The scheduler and the run worker share a small struct in shared memory:
 * the scheduler's pid and next time, the pid of the run worker whose run
 * is going on (the one-run-at-a-time guard), and the outcome of the last
 * run.  A run worker's every lock wait is bounded by subexpire.lock_wait:
 * a run that gives up on a lock is recorded as failed and tried again
 * within a minute.
 *
 * IDENTIFICATION
 *	  src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "schedule.h"
#include "subexpire.h"

/* A problem that keeps a run from starting is retried this often at most. */
#define RETRY_INTERVAL_MS (60 * 1000)

/* The longest single sleep: see the scheduler's loop. */
#define MAX_SLEEP_MS (24L * 60 * 60 * 1000)

/* What a run worker is asked to do (bgw_main_arg). */
typedef enum RunMode
{
	RUN_SCHEDULED,				/* run now, as 'schedule' */
	RUN_STARTUP					/* recover, then run as 'catch-up' if one is
								 * due */
} RunMode;

/* How a run worker's attempt ended, as the scheduler needs to know. */
typedef enum RunOutcome
{
	OUTCOME_NONE,				/* it exited before saying: see the server log */
	OUTCOME_DONE,				/* ran (or found no catch-up due) */
	OUTCOME_FAILED,				/* the run failed; recorded in subexpire_runs */
	OUTCOME_RETRY,				/* the run failed waiting for a lock;
								 * recorded, and tried again within a minute */
	OUTCOME_NOT_READY			/* the extension or target is missing */
} RunOutcome;

typedef struct SubexpireWorkerState
{
	slock_t		mutex;
	pid_t		scheduler_pid;
	pid_t		run_pid;		/* the run worker whose run is going on */
	TimestampTz next_run_at;	/* 0: none planned */
	RunOutcome	outcome;
	char		message[256];
} SubexpireWorkerState;

static SubexpireWorkerState *worker_state = NULL;

static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif

PGDLLEXPORT void subexpire_scheduler_main(Datum arg);
PGDLLEXPORT void subexpire_run_main(Datum arg);

/* ---- shared memory ---- */

#if PG_VERSION_NUM >= 150000
static void
worker_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(SubexpireWorkerState)));
}
#endif

static void
worker_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	worker_state = ShmemInitStruct("subexpire worker",
								   sizeof(SubexpireWorkerState), &found);
	if (!found)
	{
		memset(worker_state, 0, sizeof(SubexpireWorkerState));
		SpinLockInit(&worker_state->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

static void
set_outcome(RunOutcome outcome, const char *message)
{
	SpinLockAcquire(&worker_state->mutex);
	worker_state->outcome = outcome;
	strlcpy(worker_state->message, message ? message : "",
			sizeof(worker_state->message));
	SpinLockRelease(&worker_state->mutex);
}

static void
set_next_run(TimestampTz next)
{
	SpinLockAcquire(&worker_state->mutex);
	worker_state->next_run_at = next;
	SpinLockRelease(&worker_state->mutex);
}

/*
 * The worker's pid and next scheduled time, for monitoring; 0 when there
 * is no worker or no time planned.
 */
void
subexpire_worker_status(int *pid, TimestampTz *next_run_at)
{
	*pid = 0;
	*next_run_at = 0;
	if (worker_state == NULL)
		return;
	SpinLockAcquire(&worker_state->mutex);
	*pid = worker_state->scheduler_pid;
	*next_run_at = worker_state->next_run_at;
	SpinLockRelease(&worker_state->mutex);
}

/*
 * Called from _PG_init when the library is preloaded: reserve the shared
 * state and register the scheduler.
 */
void
subexpire_register_worker(void)
{
	BackgroundWorker worker;

#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = worker_shmem_request;
#else
	RequestAddinShmemSpace(MAXALIGN(sizeof(SubexpireWorkerState)));
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = worker_shmem_startup;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	strcpy(worker.bgw_library_name, "subexpire");
	strcpy(worker.bgw_function_name, "subexpire_scheduler_main");
	strcpy(worker.bgw_name, "subexpire scheduler");
	strcpy(worker.bgw_type, "subexpire scheduler");
	RegisterBackgroundWorker(&worker);
}

/* ---- the scheduler ---- */

/*
 * Find the row of a shared catalog (pg_database or pg_authid) whose name
 * column equals "name", and report whether it exists, its OID and whether
 * the flag column is true.  A heap scan, not an index scan: a process
 * connected to no database may read the shared catalogs, but not open
 * their name indexes.  Both catalogs are small.
 */
static bool
shared_catalog_row(Oid catalog, AttrNumber name_column, const char *name,
				   AttrNumber oid_column, AttrNumber flag_column,
				   Oid *oid, bool *flag)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;

	rel = table_open(catalog, AccessShareLock);
	ScanKeyInit(&key, name_column, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum(name));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;

		found = true;
		*oid = DatumGetObjectId(heap_getattr(tuple, oid_column,
											 RelationGetDescr(rel), &isnull));
		*flag = DatumGetBool(heap_getattr(tuple, flag_column,
										  RelationGetDescr(rel), &isnull));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * May the role connect to the database?  A role that may not would have
 * its run worker's connection fail with a FATAL error at every retry.  The
 * check reads pg_database, pg_authid and pg_auth_members through their
 * caches, which a process connected to no database may use (they fall back
 * to heap scans until the shared indexes are open).
 */
static bool
may_connect(Oid dboid, Oid roleid)
{
	if (superuser_arg(roleid))
		return true;
#if PG_VERSION_NUM >= 160000
	return object_aclcheck(DatabaseRelationId, dboid, roleid,
						   ACL_CONNECT) == ACLCHECK_OK;
#else
	return pg_database_aclcheck(dboid, roleid, ACL_CONNECT) == ACLCHECK_OK;
#endif
}

/*
 * Why a run cannot start now, as a message to log, or NULL when the
 * database and the role the settings name exist and may be connected to.
 * Reads the shared catalogs, in a transaction of its own.
 */
static char *
connection_problem(void)
{
	MemoryContext caller_context = CurrentMemoryContext;
	char	   *problem = NULL;
	Oid			dboid;
	Oid			roleid;
	bool		flag;

	StartTransactionCommand();
	if (!shared_catalog_row(DatabaseRelationId, Anum_pg_database_datname,
							subexpire_database, Anum_pg_database_oid,
							Anum_pg_database_datallowconn, &dboid, &flag))
		problem = psprintf("database \"%s\" named by subexpire.database does not exist; create it, or set subexpire.database and reload",
						   subexpire_database);
	else if (!flag)
		problem = psprintf("database \"%s\" named by subexpire.database does not allow connections",
						   subexpire_database);
	else if (subexpire_role[0] != '\0')
	{
		if (!shared_catalog_row(AuthIdRelationId, Anum_pg_authid_rolname,
								subexpire_role, Anum_pg_authid_oid,
								Anum_pg_authid_rolcanlogin, &roleid, &flag))
			problem = psprintf("role \"%s\" named by subexpire.role does not exist; create it (CREATE ROLE %s LOGIN), or set subexpire.role and reload",
							   subexpire_role, quote_identifier(subexpire_role));
		else if (!flag)
			problem = psprintf("role \"%s\" named by subexpire.role may not log in; ALTER ROLE %s LOGIN",
							   subexpire_role, quote_identifier(subexpire_role));
		else if (!may_connect(dboid, roleid))
			problem = psprintf("role \"%s\" named by subexpire.role may not connect to database \"%s\"; GRANT CONNECT ON DATABASE %s TO %s",
							   subexpire_role, subexpire_database,
							   quote_identifier(subexpire_database),
							   quote_identifier(subexpire_role));
	}

	/* The message must outlive the transaction's memory. */
	if (problem != NULL)
		problem = MemoryContextStrdup(caller_context, problem);
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller_context);
	return problem;
}

/*
 * Start a run worker and wait until it has finished.  Returns its outcome
 * and, in *message, what it said.
 */
static RunOutcome
run_and_wait(RunMode mode, char *message, Size message_size)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	pid_t		pid;
	RunOutcome	outcome;

	set_outcome(OUTCOME_NONE, "the run worker exited before it could run; see the server log");

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strcpy(worker.bgw_library_name, "subexpire");
	strcpy(worker.bgw_function_name, "subexpire_run_main");
	strcpy(worker.bgw_name, "subexpire run");
	strcpy(worker.bgw_type, "subexpire run");
	worker.bgw_main_arg = Int32GetDatum((int32) mode);
	worker.bgw_notify_pid = MyProcPid;
	/* Database and role as the scheduler read them, NUL-terminated each. */
	StaticAssertStmt(2 * NAMEDATALEN <= BGW_EXTRALEN, "bgw_extra too small");
	strlcpy(worker.bgw_extra, subexpire_database, NAMEDATALEN);
	strlcpy(worker.bgw_extra + NAMEDATALEN, subexpire_role, NAMEDATALEN);

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		strlcpy(message, "could not start a run worker: no background worker slot is free; raise max_worker_processes",
				message_size);
		return OUTCOME_NOT_READY;
	}
	if (WaitForBackgroundWorkerStartup(handle, &pid) == BGWH_STARTED)
		(void) WaitForBackgroundWorkerShutdown(handle);
	pfree(handle);

	SpinLockAcquire(&worker_state->mutex);
	outcome = worker_state->outcome;
	strlcpy(message, worker_state->message, message_size);
	SpinLockRelease(&worker_state->mutex);
	return outcome;
}

/*
 * Log a problem that keeps runs from starting once, not at every retry,
 * and log when it is gone.
 */
static void
report_problem(char **reported, const char *problem)
{
	if (problem == NULL)
	{
		if (*reported != NULL)
		{
			ereport(LOG,
					(errmsg("subexpire: runs can start again"),
					 errdetail("Resolved: %s.", *reported)));
			pfree(*reported);
			*reported = NULL;
		}
		return;
	}
	if (*reported != NULL && strcmp(*reported, problem) == 0)
		return;
	ereport(WARNING,
			(errmsg("subexpire: cannot run the job: %s", problem),
			 errdetail("The worker tries again at the next scheduled time or within a minute, whichever is sooner, and logs this once.")));
	if (*reported != NULL)
		pfree(*reported);
	*reported = MemoryContextStrdup(TopMemoryContext, problem);
}

void
subexpire_scheduler_main(Datum arg)
{
	SubexpireSchedule schedule;
	bool		startup_pending = true;
	bool		was_enabled;
	char	   *reported_problem = NULL;
	TimestampTz next_run = 0;
	TimestampTz retry_at = 0;
	MemoryContext loop_context;

	/*
	 * SIGTERM (a shutdown) sets a flag that the loop checks, so that the
	 * scheduler exits cleanly, with code 0, rather than being terminated.
	 */
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	/* No database: only the shared catalogs, to check database and role. */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	/*
	 * may_connect() follows role memberships, which are cached; the cache is
	 * reset on catalog changes (a GRANT of a role) only once this is set up,
	 * which a connection without a database does not do by itself.  It reads
	 * a catalog cache, so it needs a transaction.
	 */
	StartTransactionCommand();
	initialize_acl();
	CommitTransactionCommand();

	SpinLockAcquire(&worker_state->mutex);
	worker_state->scheduler_pid = MyProcPid;
	SpinLockRelease(&worker_state->mutex);
	was_enabled = subexpire_enabled;

	/* What one turn of the loop allocates, freed at the next. */
	loop_context = AllocSetContextCreate(TopMemoryContext,
										 "subexpire scheduler loop",
										 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		TimestampTz now;
		TimestampTz wake_at;
		char	   *error;
		pg_tz	   *tz;
		long		timeout_ms;
		bool		run_now;

		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			proc_exit(0);
		MemoryContextSwitchTo(loop_context);
		MemoryContextReset(loop_context);

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			/* Turned back on: check for a missed time, as at start. */
			if (subexpire_enabled && !was_enabled)
				startup_pending = true;
			was_enabled = subexpire_enabled;
			next_run = 0;		/* recompute with the new schedule */
			/* A run that could not start may be able to now: try at once. */
			retry_at = (reported_problem != NULL) ? GetCurrentTimestamp() : 0;
		}

		now = GetCurrentTimestamp();
		if (!subexpire_enabled)
		{
			set_next_run(0);
			wake_at = DT_NOEND;
		}
		else
		{
			/* The check hooks have accepted both; they still parse. */
			if (!subexpire_parse_schedule(subexpire_schedule, &schedule, &error))
				elog(ERROR, "subexpire.schedule does not parse: %s", error);
			tz = subexpire_lookup_zone(subexpire_timezone);
			if (tz == NULL)
				elog(ERROR, "subexpire.timezone \"%s\" is unknown", subexpire_timezone);
			if (next_run == 0)
				next_run = subexpire_next_run(&schedule, tz, now);

			/*
			 * Run at the scheduled time; at start-up at once; after a run
			 * that could not start, not before the retry time.
			 */
			if (retry_at != 0)
				run_now = now >= retry_at || now >= next_run;
			else
				run_now = startup_pending || now >= next_run;

			if (run_now)
			{
				char	   *problem = connection_problem();
				char		message[256];
				RunOutcome	outcome = OUTCOME_DONE;

				/* While the run goes on, the next time is the one after it. */
				set_next_run(subexpire_next_run(&schedule, tz, now));
				if (problem == NULL)
				{
					/* Once a scheduled time has come, it is a scheduled run. */
					bool		scheduled = !startup_pending || now >= next_run;

					outcome = run_and_wait(scheduled ? RUN_SCHEDULED : RUN_STARTUP,
										   message, sizeof(message));
					if (ShutdownRequestPending)
						proc_exit(0);	/* the run was stopped by the shutdown */
					if (outcome == OUTCOME_NOT_READY || outcome == OUTCOME_NONE)
						problem = message;
					else if (outcome != OUTCOME_RETRY)
						startup_pending = false;
				}
				report_problem(&reported_problem, problem);

				now = GetCurrentTimestamp();
				next_run = subexpire_next_run(&schedule, tz, now);

				/*
				 * A run that could not start, or that failed waiting for a
				 * lock that someone held, is tried again within a minute.
				 */
				retry_at = (problem != NULL || outcome == OUTCOME_RETRY)
					? TimestampTzPlusMilliseconds(now, RETRY_INTERVAL_MS) : 0;
				continue;
			}

			wake_at = next_run;
			if (retry_at != 0 && retry_at < wake_at)
				wake_at = retry_at;
			set_next_run(next_run);
		}

		/*
		 * Sleep until then, and not a second less: only a reload, a shutdown
		 * or the postmaster's death wakes us earlier.  A wait is at most a
		 * day (WaitLatch's timeout must fit an int, and a day is short enough
		 * to notice a system clock that was set), after which the loop finds
		 * the time not yet come and sleeps again.
		 */
		if (TIMESTAMP_NOT_FINITE(wake_at))
			timeout_ms = -1;
		else
			timeout_ms = Min(Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
																 wake_at), 0),
							 MAX_SLEEP_MS);
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_EXIT_ON_PM_DEATH |
						 (timeout_ms >= 0 ? WL_TIMEOUT : 0),
						 timeout_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ---- the run worker ---- */

/*
 * One worker run at a time, cluster-wide: a run worker can outlive its
 * scheduler (when the scheduler is terminated while a run goes on), and
 * the next scheduler's run must neither overlap it nor mark its record as
 * interrupted.  The guard is the run worker's pid in shared memory, where
 * no other role can take it (a user could hold any advisory lock), and it
 * goes with the process: cleared at exit, and with the shared memory after
 * a crash.
 */
static void
release_run_guard(int code, Datum arg)
{
	SpinLockAcquire(&worker_state->mutex);
	if (worker_state->run_pid == MyProcPid)
		worker_state->run_pid = 0;
	SpinLockRelease(&worker_state->mutex);
}

static bool
take_run_guard(pid_t *holder)
{
	bool		taken = false;

	SpinLockAcquire(&worker_state->mutex);
	*holder = worker_state->run_pid;
	if (*holder == 0)
	{
		worker_state->run_pid = MyProcPid;
		taken = true;
	}
	SpinLockRelease(&worker_state->mutex);
	if (taken)
		before_shmem_exit(release_run_guard, (Datum) 0);
	return taken;
}

/* Take a reload that came while the run worker waited or worked. */
static void
take_reload(void)
{
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/*
 * Start a transaction for one step of the run, as worker_spi does, taking
 * a reload that came meanwhile.  The statements on the target act as its
 * owner (see subexpire_open_target()), whatever role the worker runs as.
 */
static void
begin_step(const char *activity)
{
	take_reload();
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
end_step(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(true);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * How a failed run is told apart: one that gave up waiting for a lock (on
 * the table, on rows, on its record) is tried again within a minute, as
 * the lock's holder has likely gone by then; any other waits for the next
 * scheduled time.
 */
static RunOutcome
failure_outcome(const ErrorData *edata)
{
	return edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE
		? OUTCOME_RETRY : OUTCOME_FAILED;
}

/*
 * In a PG_CATCH() of the run worker: the error, copied into "context", and
 * the step's transaction aborted.
 */
static ErrorData *
catch_step_error(MemoryContext context)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(context);
	edata = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	return edata;
}

/*
 * Record a run that failed, after its transaction was aborted: a new
 * record when none was written yet (run_id 0), or the run's record marked
 * failed.  Recording can fail too (the extension dropped, subexpire_runs
 * truncated while the run went on): that is logged, and the run is still
 * counted as failed in the statistics by the caller.
 */
static void
record_failed_run(const char *trigger, TimestampTz as_of, int64 run_id,
				  const char *message, int64 longest)
{
	MemoryContext context = CurrentMemoryContext;
	SubexpireRunResult none = {0, 0};

	PG_TRY();
	{
		begin_step("subexpire: recording a failed run");
		if (run_id == 0)
			(void) subexpire_record_run(trigger, as_of, as_of,
										GetCurrentTimestamp(), "failed",
										&none, message);
		else
			subexpire_update_run(run_id, &none, "failed", message, longest);
		end_step();
	}
	PG_CATCH();
	{
		ErrorData  *edata = catch_step_error(context);

		ereport(LOG,
				(errmsg("subexpire: could not record the failure of a %s run: %s",
						trigger, edata->message),
				 edata->hint ? errhint("%s", edata->hint) : 0));
	}
	PG_END_TRY();
}

/*
 * A run failed: say it in the log, with what to do, as the job's own
 * error; record it (run_id 0: no record yet), count it with the rows its
 * committed batches expired, and tell the scheduler.
 */
static void
fail_run(const char *trigger, TimestampTz as_of, int64 run_id,
		 const ErrorData *edata, int64 committed, int64 longest)
{
	ereport(LOG,
			(errmsg("subexpire: %s run failed: %s", trigger, edata->message),
			 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
			 edata->hint ? errhint("%s", edata->hint) : 0));
	record_failed_run(trigger, as_of, run_id, edata->message, longest);
	subexpire_stats_count_worker_run(as_of, GetCurrentTimestamp(), committed,
									 edata->message, longest);
	set_outcome(failure_outcome(edata), edata->message);
}

/*
 * The batched run: one transaction for the record, one per batch, and a
 * last one that comes back for locked rows and closes the record.
 *
 * It times each transaction that expires rows, from its start to its
 * commit, and records the longest in subexpire_runs.longest_batch (when
 * the SQL objects have the column) and in the statistics: how long the run
 * held rows locked at most.
 */
static void
run_batched(const char *trigger)
{
	TimestampTz as_of = GetCurrentTimestamp();
	SubexpireTarget *target;
	SubexpireRunResult none = {0, 0};
	SubexpireRunResult added;
	SubexpireRunResult total = {0, 0};
	TimestampTz finished_at;
	int64		run_id;
	volatile int64 failed_run_id = 0;
	volatile int64 committed = 0;
	volatile int64 longest = -1;	/* microseconds; -1: no batch expired rows */
	TimestampTz step_started_at;
	MemoryContext run_context = CurrentMemoryContext;
	SubexpireDueRows *due_rows = subexpire_due_rows_create(run_context);
	SubexpireRunWrites *writes = subexpire_run_writes_create(run_context);
	bool		more;
	int64		round_expired;
	int64		kept_before;

	PG_TRY();
	{
		begin_step("subexpire: starting a run");
		target = subexpire_open_target(SUBEXPIRE_FOR_RUN);
		if (subexpire_max_expired_per_run > 0)
			subexpire_check_max_expired(subexpire_count_due(target, as_of), as_of);
		subexpire_close_target(target);
		run_id = subexpire_record_run(trigger, as_of, as_of, 0, "running",
									  &none, NULL);
		end_step();
		failed_run_id = run_id;

		/*
		 * A list of the due rows, in a transaction that locks none, then
		 * batches from it; another list when this one could not hold them
		 * all, unless its batches expired nothing (every row locked, or kept
		 * due by a trigger).
		 */
		do
		{
			CHECK_FOR_INTERRUPTS();
			begin_step("subexpire: finding due rows");
			target = subexpire_open_target(SUBEXPIRE_FOR_RUN);
			more = subexpire_find_due_rows(target, as_of, due_rows, writes);
			subexpire_close_target(target);
			end_step();
			round_expired = 0;
			while (more)
			{
				CHECK_FOR_INTERRUPTS();
				step_started_at = GetCurrentTimestamp();
				begin_step("subexpire: expiring a batch");
				target = subexpire_open_target(SUBEXPIRE_FOR_RUN);
				subexpire_register_run_xact();
				kept_before = subexpire_run_writes_kept(writes);
				subexpire_start_waking_wal_writer();
				added.expired_count = subexpire_expire_batch(target, as_of, as_of,
															 subexpire_batch_size,
															 due_rows, writes, &more);
				subexpire_stop_waking_wal_writer();
				subexpire_close_target(target);
				added.skipped_locked = 0;
				added.kept_active = subexpire_run_writes_kept(writes) - kept_before;

				/*
				 * The record gets the longest of the batches committed so
				 * far.
				 */
				if (added.expired_count > 0 || added.kept_active > 0)
					subexpire_update_run(run_id, &added, NULL, NULL,
										 longest);
				end_step();
				if (added.expired_count > 0)
					longest = Max(longest,
								  GetCurrentTimestamp() - step_started_at);
				total.expired_count += added.expired_count;
				round_expired += added.expired_count;
				committed = total.expired_count;
			}
		} while (round_expired > 0);

		/*
		 * Come back for the listed rows the batches could not take, unless
		 * they took them all (why: see TableDueRows in src/expire.c).
		 */
		step_started_at = GetCurrentTimestamp();
		begin_step("subexpire: finishing the run");
		target = subexpire_open_target(SUBEXPIRE_FOR_RUN);
		subexpire_register_run_xact();
		kept_before = subexpire_run_writes_kept(writes);
		if (subexpire_due_rows_all_taken(due_rows))
			added = none;
		else
			added = subexpire_expire_due(target, as_of, as_of, writes);
		added.kept_active = subexpire_run_writes_kept(writes) - kept_before;
		subexpire_warn_kept_rows(target, writes);
		subexpire_close_target(target);

		/*
		 * This transaction writes its own duration, so it can only count it
		 * up to here: what follows (retention, the log line, the commit) is
		 * left out.  Good enough: it is short, and the record and the
		 * statistics say the same.
		 */
		if (added.expired_count > 0)
			longest = Max(longest, GetCurrentTimestamp() - step_started_at);
		subexpire_update_run(run_id, &added, "succeeded", NULL,
							 longest);
		total.expired_count += added.expired_count;
		total.skipped_locked = added.skipped_locked;
		total.kept_active = subexpire_run_writes_kept(writes);
		subexpire_prune_runs();
		finished_at = GetCurrentTimestamp();
		subexpire_announce_run(trigger, run_id, as_of, as_of, finished_at,
							   &total);
		end_step();
		subexpire_stats_count_worker_run(as_of, finished_at,
										 total.expired_count, NULL, longest);
		set_outcome(OUTCOME_DONE, NULL);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		subexpire_stop_waking_wal_writer();
		edata = catch_step_error(run_context);
		fail_run(trigger, as_of, failed_run_id, edata, committed, longest);
	}
	PG_END_TRY();
}

void
subexpire_run_main(Datum arg)
{
	RunMode		mode = (RunMode) DatumGetInt32(arg);
	int			sql_version;
	char	   *extversion;
	char		database[NAMEDATALEN];
	char		role[NAMEDATALEN];
	char		lock_wait[32];
	pid_t		holder;
	const char *volatile trigger = NULL;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	strlcpy(database, MyBgworkerEntry->bgw_extra, NAMEDATALEN);
	strlcpy(role, MyBgworkerEntry->bgw_extra + NAMEDATALEN, NAMEDATALEN);
	BackgroundWorkerInitializeConnection(database, role[0] ? role : NULL, 0);

	/*
	 * Whatever the database or role defaults say: the run relies on READ
	 * COMMITTED (a statement sees rows committed before it started, and an
	 * UPDATE re-checks a row that changed while it waited), and it writes.
	 * Every lock wait of the run is bounded by subexpire.lock_wait, so that
	 * nobody holding a lock the run needs can stall it, and the scheduler
	 * waiting for it, for longer.
	 */
	DefaultXactIsoLevel = XACT_READ_COMMITTED;
	DefaultXactReadOnly = false;
	snprintf(lock_wait, sizeof(lock_wait), "%d", subexpire_lock_wait);
	SetConfigOption("lock_timeout", lock_wait, PGC_USERSET, PGC_S_SESSION);

	if (!take_run_guard(&holder))
	{
		set_outcome(OUTCOME_NOT_READY,
					psprintf("the worker run of process %d is still going on; this run waits for it to end",
							 (int) holder));
		proc_exit(0);
	}

	/* Is the extension there, and are there runs a crash interrupted? */
	begin_step("subexpire: checking");
	sql_version = subexpire_sql_version(&extversion);
	if (sql_version == 0)
	{
		end_step();
		set_outcome(OUTCOME_NOT_READY,
					psprintf("extension subexpire is not installed in database \"%s\"; run CREATE EXTENSION subexpire there",
							 database));
		proc_exit(0);
	}

	/*
	 * A library newer than the SQL objects (installed, but ALTER EXTENSION
	 * UPDATE not run yet): the runs go on with what the old objects have.
	 * Said once a run, at its start.
	 */
	if (sql_version < SUBEXPIRE_SQL_VERSION)
		ereport(LOG,
				(errmsg("subexpire: the extension in database \"%s\" is version %s, older than the library (%s)",
						database, extversion, SUBEXPIRE_SQL_VERSION_NAME),
				 errdetail("Runs work, but without what the newer versions add, such as subexpire_runs.kept_active."),
				 errhint("Run ALTER EXTENSION subexpire UPDATE.")));

	if (subexpire_fail_interrupted_runs() > 0)
		ereport(LOG,
				(errmsg("subexpire: marked as failed a run that a crash or shutdown interrupted"),
				 errdetail("The rows it committed stay expired and are counted in its record; this run expires the rest.")));

	if (mode == RUN_SCHEDULED)
		trigger = "schedule";
	else if (subexpire_catch_up)
	{
		/* A catch-up run when a scheduled time passed since the last success. */
		TimestampTz last = subexpire_last_scheduled_success();
		SubexpireSchedule schedule;
		char	   *error;
		pg_tz	   *tz = subexpire_lookup_zone(subexpire_timezone);

		if (last != 0 && tz != NULL &&
			subexpire_parse_schedule(subexpire_schedule, &schedule, &error) &&
			subexpire_next_run(&schedule, tz, last) <= GetCurrentTimestamp())
			trigger = "catch-up";
	}
	end_step();

	/*
	 * The target must be there before a run is worth starting.  A target that
	 * someone holds locked is a run that failed (recorded, and tried again
	 * within a minute); a missing one is a fault to fix, logged once.
	 */
	if (trigger != NULL)
	{
		volatile bool ready = true;
		MemoryContext context = CurrentMemoryContext;

		PG_TRY();
		{
			SubexpireTarget *target;

			begin_step("subexpire: checking the target");
			target = subexpire_open_target(SUBEXPIRE_FOR_RUN);
			subexpire_close_target(target);
			end_step();
		}
		PG_CATCH();
		{
			ErrorData  *edata = catch_step_error(context);

			if (failure_outcome(edata) == OUTCOME_RETRY)
				fail_run(trigger, GetCurrentTimestamp(), 0, edata, 0, -1);
			else
				set_outcome(OUTCOME_NOT_READY, edata->message);
			ready = false;
		}
		PG_END_TRY();
		if (!ready)
			proc_exit(0);

		/* Turned off while this worker waited: no run. */
		take_reload();
		if (!subexpire_enabled)
		{
			set_outcome(OUTCOME_DONE, NULL);
			proc_exit(0);
		}

		run_batched(trigger);
	}
	else
		set_outcome(OUTCOME_DONE, NULL);

	proc_exit(0);
}
