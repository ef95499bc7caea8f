/*-------------------------------------------------------------------------
 *
 * subxact.c
 *	  Run a step in a subtransaction and catch the error it raises.
 *
 * Several steps must not let an error end the caller's transaction: an
 * UPDATE that gives up waiting for a locked row (the run goes on without
 * it), a status word that the column's type refuses (the error is
 * reported as one about the setting), a monitoring figure that cannot be
 * computed (reported, not raised).  They share this one implementation of
 * PostgreSQL's pattern for it, as PL/pgSQL's exception blocks use.
 *
 * IDENTIFICATION
 *	  src/subxact.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "subxact.h"

/*
 * Run step(arg) in a subtransaction.  Returns NULL when it succeeded (its
 * work is kept), or the error it raised, copied into the caller's memory
 * context, with its work undone.  Every error is caught; the caller
 * decides what to do with it, and may raise it again with ReThrowError().
 */
ErrorData *
subexpire_try(void (*step) (void *arg), void *arg)
{
	MemoryContext caller_context = CurrentMemoryContext;
	ResourceOwner caller_owner = CurrentResourceOwner;
	ErrorData  *volatile error = NULL;

	BeginInternalSubTransaction(NULL);
	/* Work in the caller's context: what step() returns must survive. */
	MemoryContextSwitchTo(caller_context);
	PG_TRY();
	{
		step(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller_context);
		CurrentResourceOwner = caller_owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller_context);
		error = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller_context);
		CurrentResourceOwner = caller_owner;
	}
	PG_END_TRY();

	return error;
}
