/*-------------------------------------------------------------------------
 *
 * run.h
 *	  The life of a run, from its guard to its count: one copy for
 *	  expire_subscriptions() and the background worker.
 *
 * IDENTIFICATION
 *	  src/run.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_RUN_H
#define SUBEXPIRE_RUN_H

#include "utils/elog.h"

/* Steps of the worker, each a transaction of its own. */
extern void subexpire_take_reload(void);
extern void subexpire_begin_step(const char *activity);
extern void subexpire_end_step(void);
extern ErrorData *subexpire_catch_step_error(MemoryContext context);

/* The worker's run. */
extern ErrorData *subexpire_run_in_batches(const char *trigger);
extern void subexpire_run_not_started(const char *trigger,
									  const ErrorData *edata);

#endif							/* SUBEXPIRE_RUN_H */
