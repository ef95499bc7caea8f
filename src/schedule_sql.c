/*-------------------------------------------------------------------------
 *
 * schedule_sql.c
 *	  subexpire_next_runs(): preview when a schedule fires.
 *
 * It lets a user check a schedule before setting it, and the tests pin the
 * schedule's rules without waiting for the clock, through the code the
 * worker uses (src/schedule.c).  It lives apart from that code so that
 * schedule.c needs nothing from the backend that test/fuzz/ cannot provide.
 *
 * IDENTIFICATION
 *	  src/schedule_sql.c
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

#include "schedule.h"
#include "subexpire.h"

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
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const char *schedule_text;
	const char *zone_name;
	SubexpireSchedule schedule;
	pg_tz	   *tz;
	TimestampTz after;
	int32		count;
	char	   *error;
	Tuplestorestate *tupstore;
	TupleDesc	tupdesc;
	MemoryContext caller_context;

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

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		(rsinfo->allowedModes & SFRM_Materialize) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("subexpire_next_runs() must be called where a set can be returned")));

	caller_context = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	tupdesc = CreateTemplateTupleDesc(1);
	TupleDescInitEntry(tupdesc, (AttrNumber) 1, "subexpire_next_runs",
					   TIMESTAMPTZOID, -1, 0);
	tupstore = tuplestore_begin_heap(false, false, work_mem);
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
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = tupstore;
	rsinfo->setDesc = tupdesc;
	MemoryContextSwitchTo(caller_context);

	return (Datum) 0;
}
