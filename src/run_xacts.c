/*-------------------------------------------------------------------------
 *
 * run_xacts.c
 *	  The registry of expiry transactions in progress.
 *
 * A run that finds due rows locked must tell the rows another expiry run
 * is expiring (that run's to count) from the rows an application holds
 * (skipped, and counted as such).  So each run's top-level transaction is
 * registered here until it ends, in shared memory, where the other runs
 * look its xid up.  Each backend has its own slot (a backend runs one
 * top-level transaction at a time), so that registration cannot fail
 * however many runs go on at once.
 *
 * IDENTIFICATION
 *	  src/run_xacts.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/subtrans.h"
#include "access/transam.h"
#include "access/xact.h"
#include "miscadmin.h"
#include "storage/procarray.h"

#include "run_xacts.h"
#include "shmem.h"

/* This backend's slot: one backend, one slot (PostgreSQL 17 numbers them). */
#if PG_VERSION_NUM >= 170000
#define MY_SLOT MyProcNumber
#else
#define MY_SLOT (MyBackendId - 1)
#endif

/* The transaction this backend has registered; invalid when none. */
static TransactionId registered_xid = InvalidTransactionId;
static bool xact_callback_registered = false;

/* Forget this backend's transaction when it ends or is prepared. */
static void
unregister_run_xact(XactEvent event, void *arg)
{
	if (!TransactionIdIsValid(registered_xid))
		return;
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_PARALLEL_COMMIT &&
		event != XACT_EVENT_ABORT && event != XACT_EVENT_PARALLEL_ABORT &&
		event != XACT_EVENT_PREPARE)
		return;
	LWLockAcquire(subexpire_shared->lock, LW_EXCLUSIVE);
	subexpire_shared->run_xacts[MY_SLOT] = InvalidTransactionId;
	LWLockRelease(subexpire_shared->lock);
	registered_xid = InvalidTransactionId;
}

/*
 * The current transaction expires subscriptions: remember it until it
 * ends, so that a run that finds rows locked by it knows that they are
 * being expired, not held by the application.  Without the library
 * preloaded there is no registry, and nothing is remembered.
 */
void
subexpire_register_run_xact(void)
{
	TransactionId xid;

	if (subexpire_shared == NULL || TransactionIdIsValid(registered_xid))
		return;
	if (MY_SLOT < 0 || MY_SLOT >= subexpire_shared->run_xact_slots)
		elog(ERROR, "backend slot %d is out of the registry's %d",
			 (int) MY_SLOT, subexpire_shared->run_xact_slots);
	xid = GetTopTransactionId();
	if (!xact_callback_registered)
	{
		RegisterXactCallback(unregister_run_xact, NULL);
		xact_callback_registered = true;
	}
	LWLockAcquire(subexpire_shared->lock, LW_EXCLUSIVE);
	subexpire_shared->run_xacts[MY_SLOT] = xid;
	LWLockRelease(subexpire_shared->lock);
	registered_xid = xid;
}

/*
 * Is xid (a row's locker) a transaction of an expiry run still in
 * progress?  Without the library preloaded nobody is remembered: no.
 */
bool
subexpire_is_run_xact(TransactionId xid)
{
	bool		found = false;

	if (subexpire_shared == NULL || !TransactionIdIsNormal(xid) ||
		!TransactionIdIsInProgress(xid))
		return false;
	xid = SubTransGetTopmostTransaction(xid);
	LWLockAcquire(subexpire_shared->lock, LW_SHARED);
	for (int i = 0; i < subexpire_shared->run_xact_slots && !found; i++)
		found = TransactionIdEquals(subexpire_shared->run_xacts[i], xid);
	LWLockRelease(subexpire_shared->lock);
	return found;
}
