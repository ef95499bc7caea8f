/*-------------------------------------------------------------------------
 *
 * scheduler.h
 *	  The scheduler: the background worker that starts a run worker at each
 *	  scheduled time.
 *
 * IDENTIFICATION
 *	  src/scheduler.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_SCHEDULER_H
#define SUBEXPIRE_SCHEDULER_H

#include "datatype/timestamp.h"

extern void subexpire_register_scheduler(void);
extern void subexpire_scheduler_status(int *pid, TimestampTz *next_run_at);

extern PGDLLEXPORT void subexpire_scheduler_main(Datum arg);

#endif							/* SUBEXPIRE_SCHEDULER_H */
