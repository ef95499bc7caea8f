/*-------------------------------------------------------------------------
 *
 * run_worker.c
 *	  The run worker: the background worker process that the scheduler
 *	  starts for each run of the job.
 *
 * A run worker connects to one of the databases of subexpire.database as
 * subexpire.role (as the scheduler read them when it started the worker,
 * so that a reload that changes them needs no restart), takes the one-run-at-a-time guard,
 * marks as failed the runs that a crash left "running", and runs the job
 * in batches (src/run.c).  At start-up (and when subexpire.enabled is
 * turned back on) it only checks whether a scheduled time passed since the
 * last successful run, and then runs once as 'catch-up'.  It tells the
 * scheduler how its attempt ended through the shared worker state.
 *
 * Every lock wait of a run worker is bounded by subexpire.lock_wait: a
 * run that gives up on a lock is recorded as failed and tried again
 * within a minute.
 *
 * IDENTIFICATION
 *	  src/run_worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "extension.h"
#include "next_run.h"
#include "records.h"
#include "rules.h"
#include "run.h"
#include "run_worker.h"
#include "settings.h"
#include "shmem.h"
#include "target.h"

/* ---- the outcome, for the scheduler ---- */

static void
set_outcome(SubexpireRunOutcome outcome, const char *message)
{
	SubexpireWorkerState *state = &subexpire_shared->worker;

	SpinLockAcquire(&subexpire_shared->mutex);
	state->outcome = outcome;
	strlcpy(state->message, message ? message : "", sizeof(state->message));
	SpinLockRelease(&subexpire_shared->mutex);
}

/* Say how the attempt ended, and end the process. */
static void exit_with(SubexpireRunOutcome outcome, const char *message) pg_attribute_noreturn();

static void
exit_with(SubexpireRunOutcome outcome, const char *message)
{
	set_outcome(outcome, message);
	proc_exit(0);
}

/*
 * How a failed run is told apart: one that gave up waiting for a lock (on
 * the table, on rows, on its record) is tried again within a minute, as
 * the lock's holder has likely gone by then; any other waits for the next
 * scheduled time.
 */
static SubexpireRunOutcome
failure_outcome(const ErrorData *edata)
{
	return edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE
		? SUBEXPIRE_OUTCOME_RETRY : SUBEXPIRE_OUTCOME_FAILED;
}

/*
 * Start a run worker in "database" and wait until it has finished (called
 * by the scheduler).  Returns its outcome and, in *message, what it said.
 */
SubexpireRunOutcome
subexpire_start_run_worker(const char *database, SubexpireRunMode mode,
						   char *message, Size message_size)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	pid_t		pid;
	SubexpireRunOutcome outcome;

	set_outcome(SUBEXPIRE_OUTCOME_NONE,
				"the run worker exited before it said how its run ended; see the server log");

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
	strlcpy(worker.bgw_extra, database, NAMEDATALEN);
	strlcpy(worker.bgw_extra + NAMEDATALEN, subexpire_role, NAMEDATALEN);

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		strlcpy(message, "could not start a run worker: no background worker slot is free; raise max_worker_processes",
				message_size);
		return SUBEXPIRE_OUTCOME_NOT_READY;
	}
	if (WaitForBackgroundWorkerStartup(handle, &pid) == BGWH_STARTED)
		(void) WaitForBackgroundWorkerShutdown(handle);
	pfree(handle);

	SpinLockAcquire(&subexpire_shared->mutex);
	outcome = subexpire_shared->worker.outcome;
	strlcpy(message, subexpire_shared->worker.message, message_size);
	SpinLockRelease(&subexpire_shared->mutex);
	return outcome;
}

/* ---- the guard ---- */

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
	SpinLockAcquire(&subexpire_shared->mutex);
	if (subexpire_shared->worker.run_pid == MyProcPid)
		subexpire_shared->worker.run_pid = 0;
	SpinLockRelease(&subexpire_shared->mutex);
}

static bool
take_run_guard(pid_t *holder)
{
	bool		taken = false;

	SpinLockAcquire(&subexpire_shared->mutex);
	*holder = subexpire_shared->worker.run_pid;
	if (*holder == 0)
	{
		subexpire_shared->worker.run_pid = MyProcPid;
		taken = true;
	}
	SpinLockRelease(&subexpire_shared->mutex);
	if (taken)
		before_shmem_exit(release_run_guard, (Datum) 0);
	return taken;
}

/* ---- the steps of the run worker ---- */

/*
 * Connect, and set what the run relies on, whatever the database or role
 * defaults say: READ COMMITTED (a statement sees rows committed before it
 * started, and an UPDATE re-checks a row that changed while it waited),
 * read-write, and every lock wait bounded by subexpire.lock_wait, so that
 * nobody holding a lock the run needs can stall it, and the scheduler
 * waiting for it, for longer.
 */
static void
connect_session(char *database)
{
	char		role[NAMEDATALEN];
	char		lock_wait[32];

	strlcpy(database, MyBgworkerEntry->bgw_extra, NAMEDATALEN);
	strlcpy(role, MyBgworkerEntry->bgw_extra + NAMEDATALEN, NAMEDATALEN);
	BackgroundWorkerInitializeConnection(database, role[0] ? role : NULL, 0);

	DefaultXactIsoLevel = XACT_READ_COMMITTED;
	DefaultXactReadOnly = false;
	snprintf(lock_wait, sizeof(lock_wait), "%d", subexpire_lock_wait);
	SetConfigOption("lock_timeout", lock_wait, PGC_USERSET, PGC_S_SESSION);
}

/*
 * Is the extension there?  A library newer than the SQL objects
 * (installed, but ALTER EXTENSION UPDATE not run yet) runs with what the
 * old objects have, said once a run, at its start.  The caller is in a
 * step.
 */
static bool
extension_ready(const char *database)
{
	char	   *extversion;
	int			sql_version = subexpire_sql_version(&extversion);

	if (sql_version == 0)
		return false;
	if (sql_version < SUBEXPIRE_SQL_VERSION)
		ereport(LOG,
				(errmsg("subexpire: the extension in database \"%s\" is version %s, older than the library (%s)",
						database, extversion, SUBEXPIRE_SQL_VERSION_NAME),
				 errdetail("Runs work, but without what the newer versions add, such as subexpire_runs.kept_active."),
				 errhint("Run ALTER EXTENSION subexpire UPDATE.")));
	return true;
}

/*
 * The trigger of this run: 'schedule' when the scheduler says so; at
 * start-up 'catch-up' when a scheduled time passed since the last
 * successful run, and NULL (no run) otherwise.  The caller is in a step.
 */
static const char *
choose_trigger(SubexpireRunMode mode)
{
	TimestampTz last;

	if (mode == SUBEXPIRE_RUN_SCHEDULED)
		return "schedule";
	if (!subexpire_catch_up)
		return NULL;
	last = subexpire_last_scheduled_success();
	if (last != 0 &&
		subexpire_next_scheduled_run(last) <= GetCurrentTimestamp())
		return "catch-up";
	return NULL;
}

/*
 * The target of the settings' rule must be there before a run is worth
 * starting.  A target that someone holds locked is a run that failed
 * (recorded, and tried again within a minute); a missing one is a fault to
 * fix, logged once by the scheduler.  With rules in subexpire_rules, a
 * rule whose table is missing fails on its own in the run, and the others
 * run.  Returns whether the run can start; when not, the outcome is set.
 */
static bool
target_ready(const char *trigger)
{
	MemoryContext context = CurrentMemoryContext;
	volatile bool ready = true;

	PG_TRY();
	{
		List	   *rules;

		subexpire_begin_step("subexpire: checking the target");
		rules = subexpire_load_rules(NULL);
		if (subexpire_rules_are_the_settings(rules))
			subexpire_close_target(subexpire_open_target(linitial(rules),
														 SUBEXPIRE_FOR_RUN));
		subexpire_end_step();
	}
	PG_CATCH();
	{
		ErrorData  *edata = subexpire_catch_step_error(context);

		if (failure_outcome(edata) == SUBEXPIRE_OUTCOME_RETRY)
		{
			subexpire_run_not_started(trigger, edata);
			set_outcome(SUBEXPIRE_OUTCOME_RETRY, edata->message);
		}
		else
			set_outcome(SUBEXPIRE_OUTCOME_NOT_READY, edata->message);
		ready = false;
	}
	PG_END_TRY();
	return ready;
}

void
subexpire_run_main(Datum arg)
{
	SubexpireRunMode mode = (SubexpireRunMode) DatumGetInt32(arg);
	char		database[NAMEDATALEN];
	pid_t		holder;
	const char *trigger;
	ErrorData  *error;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	connect_session(database);

	if (!take_run_guard(&holder))
		exit_with(SUBEXPIRE_OUTCOME_NOT_READY,
				  psprintf("the worker run of process %d is still going on; this run waits for it to end",
						   (int) holder));

	/* Is the extension there, and are there runs a crash interrupted? */
	subexpire_begin_step("subexpire: checking");
	if (!extension_ready(database))
	{
		subexpire_end_step();
		exit_with(SUBEXPIRE_OUTCOME_NOT_READY,
				  psprintf("extension subexpire is not installed in database \"%s\"; run CREATE EXTENSION subexpire there",
						   database));
	}
	if (subexpire_fail_interrupted_runs() > 0)
		ereport(LOG,
				(errmsg("subexpire: marked as failed a run that a crash or shutdown interrupted"),
				 errdetail("The rows it committed stay expired and are counted in its record; this run expires the rest.")));
	trigger = choose_trigger(mode);
	subexpire_end_step();

	if (trigger == NULL)
		exit_with(SUBEXPIRE_OUTCOME_DONE, NULL);
	if (!target_ready(trigger))
		proc_exit(0);

	/* Turned off while this worker waited: no run. */
	subexpire_take_reload();
	if (!subexpire_enabled)
		exit_with(SUBEXPIRE_OUTCOME_DONE, NULL);

	error = subexpire_run_in_batches(trigger);
	if (error == NULL)
		exit_with(SUBEXPIRE_OUTCOME_DONE, NULL);
	exit_with(failure_outcome(error), error->message);
}
