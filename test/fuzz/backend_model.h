/*-------------------------------------------------------------------------
 *
 * backend_model.h
 *	  What src/schedule.c needs from the server, for a fuzzing build: the
 *	  harness's view of the memory, calendar and time zone model that
 *	  backend_model.c provides in place of the backend's own code.
 *
 * The harness uses the same model to compute, independently of
 * schedule.c, when a schedule should fire, so the model exposes the exact
 * offsets and transitions of its zones, which the backend's pg_tz hides.
 *
 * IDENTIFICATION
 *	  test/fuzz/backend_model.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FUZZ_BACKEND_MODEL_H
#define FUZZ_BACKEND_MODEL_H

#include "postgres.h"

#include "pgtime.h"

/* Days between 1970-01-01 (Unix epoch) and 2000-01-01 (PostgreSQL epoch). */
#define MODEL_EPOCH_DAYS 10957

/* One change of a zone's offset from UTC. */
typedef struct ModelTransition
{
	int64		at;				/* seconds since 2000-01-01 00:00 UTC */
	int			offset_after;	/* seconds east of UTC from "at" on */
} ModelTransition;

/* Memory: free everything palloc'd since the last call (one fuzz input). */
extern void model_free_all(void);

/* The proleptic Gregorian calendar, years numbered astronomically (1 BC = 0). */
extern int64 model_days_from_civil(int64 year, int month, int day);
extern void model_civil_from_days(int64 days, int64 *year, int *month,
								  int *day);
extern int	model_weekday(int64 days);
extern int64 model_floor_div(int64 a, int64 b);

/* The zones of the model. */
extern int	model_zone_count(void);
extern pg_tz *model_zone(int i);
extern const char *model_zone_name(const pg_tz *tz);
extern bool model_zone_acceptable(const pg_tz *tz);
extern int	model_offset_at(const pg_tz *tz, int64 seconds);
extern int	model_transitions(const pg_tz *tz, int64 from, int64 to,
							  ModelTransition *out, int max);

#endif							/* FUZZ_BACKEND_MODEL_H */
