/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  The extension's one struct in shared memory, its request and startup
 *	  hooks, and the file that keeps the statistics across a clean restart.
 *
 * The struct has three parts, each read and written by its own module:
 * the statistics counters (src/stats.c), the state that the scheduler and
 * the run worker share (src/scheduler.c, src/run_worker.c), and the
 * registry of expiry transactions in progress (src/run_xacts.c), one slot
 * for each backend, so that it can never be full.
 *
 * The counters survive a clean restart: the postmaster writes them to a
 * file at shutdown and reads them back at start, as pg_stat_statements
 * does; after a crash they start from zero.
 *
 * IDENTIFICATION
 *	  src/shmem.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/autovacuum.h"
#include "postmaster/postmaster.h"
#include "replication/walsender.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "shmem.h"

#define STATS_FILE	PGSTAT_STAT_PERMANENT_DIRECTORY "/subexpire.stat"
#define STATS_FILE_MAGIC 0x53584534 /* "SXE4": each database's counters */
#define STATS_FILE_MAGIC_2_0 0x53584533 /* "SXE3": with the rules' counters */
#define STATS_FILE_MAGIC_1_1 0x53584532 /* "SXE2": library 1.1 and 1.2 */
#define STATS_FILE_MAGIC_1_0 0x53584531 /* "SXE1": library 1.0 */

/* How much of SubexpireCounters a stats file of library 1.0 holds. */
#define COUNTERS_SIZE_1_0 offsetof(SubexpireCounters, last_run_longest_batch)

SubexpireShared *subexpire_shared = NULL;

static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif

/*
 * One registry slot for each process that can run a transaction: a backend
 * runs one top-level transaction at a time.  MaxBackends is known when the
 * request hook runs (PostgreSQL 15 and later); before, it is computed from
 * the same settings, as the postmaster does after loading the library.
 */
static int
run_xact_slots(void)
{
#if PG_VERSION_NUM >= 150000
	return MaxBackends;
#else
	return MaxConnections + autovacuum_max_workers + 1 +
		max_worker_processes + max_wal_senders;
#endif
}

static Size
shared_size(void)
{
	return add_size(offsetof(SubexpireShared, run_xacts),
					mul_size(run_xact_slots(), sizeof(TransactionId)));
}

static void
shmem_request(void)
{
#if PG_VERSION_NUM >= 150000
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	RequestAddinShmemSpace(MAXALIGN(shared_size()));
	RequestNamedLWLockTranche("subexpire", 1);
}

/* The counters as they are at start, or after subexpire_stats_reset(). */
void
subexpire_counters_clear(SubexpireCounters *counters)
{
	memset(counters, 0, sizeof(SubexpireCounters));
	counters->last_run_longest_batch = -1;
	counters->stats_reset = GetCurrentTimestamp();
}

/* Write the counters to the stats file, at a clean shutdown. */
static void
save_counters(int code, Datum arg)
{
	FILE	   *file;
	uint32		magic = STATS_FILE_MAGIC;

	/* After a crash, or in a process that is not the postmaster: no. */
	if (code != 0 || subexpire_shared == NULL)
		return;

	file = AllocateFile(STATS_FILE ".tmp", PG_BINARY_W);
	if (file == NULL ||
		fwrite(&magic, sizeof(magic), 1, file) != 1 ||
		fwrite(subexpire_shared->databases,
			   sizeof(subexpire_shared->databases), 1, file) != 1 ||
		FreeFile(file) != 0)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not write subexpire statistics file \"%s\": %m",
						STATS_FILE ".tmp")));
		if (file)
			FreeFile(file);
		unlink(STATS_FILE ".tmp");
		return;
	}
	(void) durable_rename(STATS_FILE ".tmp", STATS_FILE, LOG);
}

/*
 * The counters of a file that an older library wrote (the server restarted
 * with a newer library), which counted the runs of the whole cluster, in
 * one database's slot for the first database to take (see
 * SubexpireDatabaseCounters).  The counters added since start as "none",
 * the rules' empty when the file has none.  False when the file is not
 * one of theirs.
 */
static bool
load_cluster_counters(FILE *file, uint32 magic)
{
	SubexpireDatabaseCounters *slot = &subexpire_shared->databases[0];
	SubexpireCounters counters;

	memset(&counters, 0, sizeof(counters));
	counters.last_run_longest_batch = -1;
	if (!(((magic == STATS_FILE_MAGIC_2_0 || magic == STATS_FILE_MAGIC_1_1) &&
		   fread(&counters, sizeof(counters), 1, file) == 1) ||
		  (magic == STATS_FILE_MAGIC_1_0 &&
		   fread(&counters, COUNTERS_SIZE_1_0, 1, file) == 1)))
		return false;
	slot->counters = counters;
	slot->inherited = true;
	if (magic == STATS_FILE_MAGIC_2_0 &&
		fread(slot->rules, sizeof(slot->rules), 1, file) != 1)
		memset(slot->rules, 0, sizeof(slot->rules));
	return true;
}

/* Read the counters back from the stats file, if there is one. */
static void
load_counters(void)
{
	FILE	   *file = AllocateFile(STATS_FILE, PG_BINARY_R);
	uint32		magic;
	bool		read;

	if (file == NULL)
		return;
	read = fread(&magic, sizeof(magic), 1, file) == 1 &&
		((magic == STATS_FILE_MAGIC &&
		  fread(subexpire_shared->databases,
				sizeof(subexpire_shared->databases), 1, file) == 1) ||
		 load_cluster_counters(file, magic));
	if (!read)
	{
		memset(subexpire_shared->databases, 0,
			   sizeof(subexpire_shared->databases));
		ereport(LOG,
				(errmsg("ignoring invalid subexpire statistics file \"%s\"",
						STATS_FILE)));
	}
	FreeFile(file);
	/* Once read, the file is stale: a crash must not bring it back. */
	unlink(STATS_FILE);
}

static void
shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	subexpire_shared = ShmemInitStruct("subexpire", shared_size(), &found);
	if (!found)
	{
		memset(subexpire_shared, 0, shared_size());
		subexpire_shared->lock = &(GetNamedLWLockTranche("subexpire"))->lock;
		SpinLockInit(&subexpire_shared->mutex);
		subexpire_shared->run_xact_slots = run_xact_slots();
	}
	LWLockRelease(AddinShmemInitLock);

	/* Only the postmaster reads the file at start and writes it at exit. */
	if (!IsUnderPostmaster)
	{
		if (!found)
			load_counters();
		on_shmem_exit(save_counters, (Datum) 0);
	}
}

/* Called from _PG_init when the library is preloaded. */
void
subexpire_shmem_init(void)
{
#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = shmem_request;
#else
	shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = shmem_startup;
}
