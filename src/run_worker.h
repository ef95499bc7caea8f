/*-------------------------------------------------------------------------
 *
 * run_worker.h
 *	  The background worker process that runs one run of the job.
 *
 * IDENTIFICATION
 *	  src/run_worker.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_RUN_WORKER_H
#define SUBEXPIRE_RUN_WORKER_H

#include "shmem.h"

/* What a run worker is asked to do. */
typedef enum SubexpireRunMode
{
	SUBEXPIRE_RUN_SCHEDULED,	/* run now, as 'schedule' */
	SUBEXPIRE_RUN_STARTUP		/* recover, then run as 'catch-up' if one is
								 * due */
} SubexpireRunMode;

extern SubexpireRunOutcome subexpire_start_run_worker(const char *database,
													  SubexpireRunMode mode,
													  char *message,
													  Size message_size);

extern PGDLLEXPORT void subexpire_run_main(Datum arg);

#endif							/* SUBEXPIRE_RUN_WORKER_H */
