/*-------------------------------------------------------------------------
 *
 * next_run.c
 *	  When the job runs next: the next time of subexpire.schedule in
 *	  subexpire.timezone, and subexpire_next_runs() to preview a schedule.
 *
 * The scheduler, the run worker (for a catch-up run) and health's overdue
 * check all ask subexpire_next_scheduled_run(), so that they agree.
 *
 * subexpire_next_runs() lets a user check a schedule before setting it, and
 * the tests pin the schedule's rules without waiting for the clock, through
 * the code the worker uses (src/schedule.c).  This lives apart from that
 * code so that schedule.c needs nothing from the backend that test/fuzz/
 * cannot provide.
 *
 * IDENTIFICATION
 *	  src/next_run.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "next_run.h"
#include "schedule.h"
#include "settings.h"
#include "srf.h"

/*
 * The first time after "after" at which subexpire.schedule fires, read in
 * subexpire.timezone; DT_NOEND when it never does.  The settings' check
 * hooks have accepted both, so they parse.
 */
TimestampTz
subexpire_next_scheduled_run(TimestampTz after)
{
	SubexpireSchedule schedule;
	char	   *error;
	pg_tz	   *tz;

	if (!subexpire_parse_schedule(subexpire_schedule, &schedule, &error))
		elog(ERROR, "subexpire.schedule does not parse: %s", error);
	tz = subexpire_lookup_zone(subexpire_timezone);
	if (tz == NULL)
		elog(ERROR, "subexpire.timezone \"%s\" is unknown", subexpire_timezone);
	return subexpire_next_run(&schedule, tz, after);
}

/*
 * subexpire_next_runs(schedule text, timezone text, after timestamptz,
 *					   count int) RETURNS SETOF timestamptz
 *
 * The next "count" times the schedule fires after "after", computed by the
 * code the worker uses; NULL schedule or timezone: the current settings.
 * A schedule that never fires returns no rows.
 */
PG_FUNCTION_INFO_V1(subexpire_next_runs);

Datum
subexpire_next_runs(PG_FUNCTION_ARGS)
{
	const char *schedule_text;
	const char *zone_name;
	SubexpireSchedule schedule;
	pg_tz	   *tz;
	TimestampTz after;
	int32		count;
	char	   *error;
	Tuplestorestate *tupstore;
	TupleDesc	tupdesc;

	schedule_text = PG_ARGISNULL(0) ? subexpire_schedule : text_to_cstring(PG_GETARG_TEXT_PP(0));
	zone_name = PG_ARGISNULL(1) ? subexpire_timezone : text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", PG_ARGISNULL(2) ? "after" : "count"),
				 errhint("Leave it out to use the default.")));
	after = PG_GETARG_TIMESTAMPTZ(2);
	count = PG_GETARG_INT32(3);

	if (!subexpire_parse_schedule(schedule_text, &schedule, &error))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid schedule \"%s\"", schedule_text),
				 errdetail("%s.", error),
				 errhint("%s", SUBEXPIRE_SCHEDULE_FORMS)));
	tz = subexpire_lookup_zone(zone_name);
	if (tz == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid time zone \"%s\"", zone_name),
				 errhint("%s", SUBEXPIRE_ZONE_FORMS)));
	if (count < 0 || count > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("count must be from 0 to 1000, not %d", count)));
	if (TIMESTAMP_NOT_FINITE(after))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("after must be a finite time")));

	tupstore = subexpire_result_set(fcinfo, &tupdesc);
	for (int i = 0; i < count; i++)
	{
		Datum		value;
		bool		isnull = false;

		CHECK_FOR_INTERRUPTS();
		after = subexpire_next_run(&schedule, tz, after);
		if (TIMESTAMP_NOT_FINITE(after))
			break;
		value = TimestampTzGetDatum(after);
		tuplestore_putvalues(tupstore, tupdesc, &value, &isnull);
	}
	return (Datum) 0;
}
