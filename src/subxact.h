/*-------------------------------------------------------------------------
 *
 * subxact.h
 *	  Run a step in a subtransaction and catch the error it raises.
 *
 * IDENTIFICATION
 *	  src/subxact.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_SUBXACT_H
#define SUBEXPIRE_SUBXACT_H

#include "utils/elog.h"

extern ErrorData *subexpire_try(void (*step) (void *arg), void *arg);

#endif							/* SUBEXPIRE_SUBXACT_H */
