/*-------------------------------------------------------------------------
 *
 * next_run.h
 *	  When the job runs next, as the settings say.
 *
 * IDENTIFICATION
 *	  src/next_run.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_NEXT_RUN_H
#define SUBEXPIRE_NEXT_RUN_H

#include "datatype/timestamp.h"

extern TimestampTz subexpire_next_scheduled_run(TimestampTz after);

#endif							/* SUBEXPIRE_NEXT_RUN_H */
