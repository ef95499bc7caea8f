/*-------------------------------------------------------------------------
 *
 * scheduler.c
 *	  The scheduler: the background worker that runs the job on
 *	  subexpire.schedule.
 *
 * One per cluster, started by the postmaster once recovery has finished
 * (so a standby never runs the job and a promoted one starts it).  It
 * sleeps until the next scheduled time, then, for each database of
 * subexpire.database in turn, starts a run worker (src/run_worker.c) and
 * waits for it: one run at a time.  It is connected to no database, only
 * to the shared catalogs, so that it can check that each database and the
 * role named by the settings exist before each run; a problem is that
 * database's alone, logged once and retried, never a crash loop, and the
 * other databases run.  Each database has its own catch-up and retries.
 * Between scheduled times it sleeps: only a reload, a shutdown or the
 * postmaster's death wakes it.
 *
 * IDENTIFICATION
 *	  src/scheduler.c
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
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "next_run.h"
#include "run_worker.h"
#include "scheduler.h"
#include "settings.h"
#include "shmem.h"

/* A problem that keeps a run from starting is retried this often at most. */
#define RETRY_INTERVAL_MS (60 * 1000)

/* The longest single sleep: see sleep_until(). */
#define MAX_SLEEP_MS (24L * 60 * 60 * 1000)

/* What the scheduler keeps for each database of subexpire.database. */
typedef struct DatabaseState
{
	char		name[NAMEDATALEN];
	bool		startup_pending;	/* check for a missed time (catch-up) */
	char	   *reported_problem;	/* logged once, until it is gone */
	TimestampTz retry_at;		/* 0: no retry planned */
} DatabaseState;

/* What the scheduler's loop keeps from one turn to the next. */
typedef struct SchedulerState
{
	bool		was_enabled;
	TimestampTz next_run;		/* 0: to be computed */
	int			ndatabases;
	DatabaseState *databases;	/* in TopMemoryContext */
} SchedulerState;

/* ---- the shared state ---- */

static void
set_next_run(TimestampTz next)
{
	SpinLockAcquire(&subexpire_shared->mutex);
	subexpire_shared->worker.next_run_at = next;
	SpinLockRelease(&subexpire_shared->mutex);
}

/*
 * The scheduler's pid and next scheduled time, for monitoring; 0 when
 * there is no scheduler or no time planned.
 */
void
subexpire_scheduler_status(int *pid, TimestampTz *next_run_at)
{
	*pid = 0;
	*next_run_at = 0;
	if (subexpire_shared == NULL)
		return;
	SpinLockAcquire(&subexpire_shared->mutex);
	*pid = subexpire_shared->worker.scheduler_pid;
	*next_run_at = subexpire_shared->worker.next_run_at;
	SpinLockRelease(&subexpire_shared->mutex);
}

/* Called from _PG_init when the library is preloaded. */
void
subexpire_register_scheduler(void)
{
	BackgroundWorker worker;

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

/* ---- before a run: the database and the role ---- */

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
connection_problem(const char *database)
{
	MemoryContext caller_context = CurrentMemoryContext;
	char	   *problem = NULL;
	Oid			dboid;
	Oid			roleid;
	bool		flag;

	StartTransactionCommand();
	if (!shared_catalog_row(DatabaseRelationId, Anum_pg_database_datname,
							database, Anum_pg_database_oid,
							Anum_pg_database_datallowconn, &dboid, &flag))
		problem = psprintf("database \"%s\" named by subexpire.database does not exist; create it, or set subexpire.database and reload",
						   database);
	else if (!flag)
		problem = psprintf("database \"%s\" named by subexpire.database does not allow connections",
						   database);
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
							   subexpire_role, database,
							   quote_identifier(database),
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
 * " in database "shop"" when subexpire.database lists several, so that a
 * message says which; nothing with one, as before there could be several.
 */
static const char *
in_database(const DatabaseState *db)
{
	if (subexpire_database_count() == 1)
		return "";
	return psprintf(" in database \"%s\"", db->name);
}

/*
 * Log a problem that keeps a database's runs from starting once, not at
 * every retry, and log when it is gone.
 */
static void
report_problem(DatabaseState *db, const char *problem)
{
	char	  **reported = &db->reported_problem;

	if (problem == NULL)
	{
		if (*reported != NULL)
		{
			ereport(LOG,
					(errmsg("subexpire: runs can start again%s", in_database(db)),
					 errdetail("Resolved: %s.", *reported)));
			pfree(*reported);
			*reported = NULL;
		}
		return;
	}
	if (*reported != NULL && strcmp(*reported, problem) == 0)
		return;
	ereport(WARNING,
			(errmsg("subexpire: cannot run the job%s: %s", in_database(db),
					problem),
			 errdetail("The worker tries again at the next scheduled time or within a minute, whichever is sooner, and logs this once.")));
	if (*reported != NULL)
		pfree(*reported);
	*reported = MemoryContextStrdup(TopMemoryContext, problem);
}

/* ---- the loop ---- */

/*
 * Make the list of databases from subexpire.database: a database listed
 * before keeps its state (a retry planned, a problem logged); one new to
 * the list checks for a missed time, as every database does at start.
 */
static void
set_databases(SchedulerState *state)
{
	int			n = subexpire_database_count();
	DatabaseState *databases = MemoryContextAllocZero(TopMemoryContext,
													  n * sizeof(DatabaseState));

	for (int i = 0; i < n; i++)
	{
		DatabaseState *db = &databases[i];

		strlcpy(db->name, subexpire_database_name(i), NAMEDATALEN);
		db->startup_pending = true;
		for (int j = 0; j < state->ndatabases; j++)
			if (strcmp(state->databases[j].name, db->name) == 0)
			{
				*db = state->databases[j];
				state->databases[j].reported_problem = NULL;
				break;
			}
	}
	for (int j = 0; j < state->ndatabases; j++)
		if (state->databases[j].reported_problem != NULL)
			pfree(state->databases[j].reported_problem);
	if (state->databases != NULL)
		pfree(state->databases);
	state->databases = databases;
	state->ndatabases = n;
}

static void
scheduler_init(SchedulerState *state)
{
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

	SpinLockAcquire(&subexpire_shared->mutex);
	subexpire_shared->worker.scheduler_pid = MyProcPid;
	SpinLockRelease(&subexpire_shared->mutex);

	memset(state, 0, sizeof(SchedulerState));
	state->was_enabled = subexpire_enabled;
	set_databases(state);
}

/* Take a reload: a new schedule, or the job turned on or off. */
static void
take_reload(SchedulerState *state)
{
	bool		turned_on;

	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	set_databases(state);
	turned_on = subexpire_enabled && !state->was_enabled;
	state->was_enabled = subexpire_enabled;
	state->next_run = 0;		/* recompute with the new schedule */
	for (int i = 0; i < state->ndatabases; i++)
	{
		DatabaseState *db = &state->databases[i];

		/* Turned back on: check for a missed time, as at start. */
		if (turned_on)
			db->startup_pending = true;
		/* A run that could not start may be able to now: try at once. */
		db->retry_at = (db->reported_problem != NULL) ? GetCurrentTimestamp() : 0;
	}
}

/*
 * Is it time to run in database db?  At the scheduled time
 * (scheduled_time_came); at start-up at once; after a run that could not
 * start, not before the retry time.
 */
static bool
database_due(const DatabaseState *db, bool scheduled_time_came,
			 TimestampTz now)
{
	if (scheduled_time_came)
		return true;
	if (db->retry_at != 0)
		return now >= db->retry_at;
	return db->startup_pending;
}

/*
 * Start a run worker in database db, wait for it, and plan that
 * database's retry within a minute after a run that could not start or
 * that failed waiting for a lock that someone held.
 */
static void
run_database(DatabaseState *db, bool scheduled_time_came)
{
	char	   *problem = connection_problem(db->name);
	char		message[256];
	SubexpireRunOutcome outcome = SUBEXPIRE_OUTCOME_DONE;

	if (problem == NULL)
	{
		/* Once a scheduled time has come, it is a scheduled run. */
		bool		scheduled = !db->startup_pending || scheduled_time_came;

		outcome = subexpire_start_run_worker(db->name,
											 scheduled ? SUBEXPIRE_RUN_SCHEDULED
											 : SUBEXPIRE_RUN_STARTUP,
											 message, sizeof(message));
		if (ShutdownRequestPending)
			proc_exit(0);		/* the run was stopped by the shutdown */
		if (outcome == SUBEXPIRE_OUTCOME_NOT_READY ||
			outcome == SUBEXPIRE_OUTCOME_NONE)
			problem = message;
		else if (outcome != SUBEXPIRE_OUTCOME_RETRY)
			db->startup_pending = false;
	}
	report_problem(db, problem);
	db->retry_at = (problem != NULL || outcome == SUBEXPIRE_OUTCOME_RETRY)
		? TimestampTzPlusMilliseconds(GetCurrentTimestamp(), RETRY_INTERVAL_MS)
		: 0;
}

/*
 * Run in each database whose time has come, one after another, and plan
 * the next scheduled time.
 */
static void
run_now(SchedulerState *state, TimestampTz now)
{
	bool		scheduled_time_came = now >= state->next_run;

	/* While the runs go on, the next time is the one after them. */
	set_next_run(subexpire_next_scheduled_run(now));
	for (int i = 0; i < state->ndatabases; i++)
	{
		DatabaseState *db = &state->databases[i];

		if (ShutdownRequestPending)
			proc_exit(0);
		if (database_due(db, scheduled_time_came, now))
			run_database(db, scheduled_time_came);
	}
	state->next_run = subexpire_next_scheduled_run(GetCurrentTimestamp());
}

/* Is it time to run in any database? */
static bool
time_to_run(const SchedulerState *state, TimestampTz now)
{
	bool		scheduled_time_came = now >= state->next_run;

	for (int i = 0; i < state->ndatabases; i++)
		if (database_due(&state->databases[i], scheduled_time_came, now))
			return true;
	return false;
}

/*
 * Sleep until wake_at, and not a second less: only a reload, a shutdown or
 * the postmaster's death wakes us earlier.  A wait is at most a day
 * (WaitLatch's timeout must fit an int, and a day is short enough to
 * notice a system clock that was set), after which the loop finds the time
 * not yet come and sleeps again.
 */
static void
sleep_until(TimestampTz wake_at)
{
	long		timeout_ms = -1;

	if (!TIMESTAMP_NOT_FINITE(wake_at))
		timeout_ms = Min(Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
															 wake_at), 0),
						 MAX_SLEEP_MS);
	(void) WaitLatch(MyLatch,
					 WL_LATCH_SET | WL_EXIT_ON_PM_DEATH |
					 (timeout_ms >= 0 ? WL_TIMEOUT : 0),
					 timeout_ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
}

void
subexpire_scheduler_main(Datum arg)
{
	SchedulerState state;
	MemoryContext loop_context;

	scheduler_init(&state);

	/* What one turn of the loop allocates, freed at the next. */
	loop_context = AllocSetContextCreate(TopMemoryContext,
										 "subexpire scheduler loop",
										 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		TimestampTz now;
		TimestampTz wake_at;

		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			proc_exit(0);
		MemoryContextSwitchTo(loop_context);
		MemoryContextReset(loop_context);
		if (ConfigReloadPending)
			take_reload(&state);

		now = GetCurrentTimestamp();
		if (!subexpire_enabled)
		{
			set_next_run(0);
			sleep_until(DT_NOEND);
			continue;
		}
		if (state.next_run == 0)
			state.next_run = subexpire_next_scheduled_run(now);
		if (time_to_run(&state, now))
		{
			run_now(&state, now);
			continue;
		}

		wake_at = state.next_run;
		for (int i = 0; i < state.ndatabases; i++)
			if (state.databases[i].retry_at != 0 &&
				state.databases[i].retry_at < wake_at)
				wake_at = state.databases[i].retry_at;
		set_next_run(state.next_run);
		sleep_until(wake_at);
	}
}
