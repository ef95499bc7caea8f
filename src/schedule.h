/*-------------------------------------------------------------------------
 *
 * schedule.h
 *	  The schedule: a parsed subexpire.schedule, and when it next fires.
 *
 * IDENTIFICATION
 *	  src/schedule.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_SCHEDULE_H
#define SUBEXPIRE_SCHEDULE_H

#include "datatype/timestamp.h"
#include "pgtime.h"

typedef struct SubexpireSchedule
{
	int			interval_seconds;	/* "N seconds"; 0 for a cron schedule */
	uint64		minutes;		/* bit m set: minute m (0-59) matches */
	uint32		hours;			/* bit h: hour h (0-23) */
	uint32		days_of_month;	/* bit d: day d (1-31) */
	uint16		months;			/* bit m: month m (1-12) */
	uint8		days_of_week;	/* bit d: weekday d (0-6, Sunday 0) */
	bool		day_of_month_restricted;	/* its field did not start with
											 * '*' */
	bool		day_of_week_restricted;
} SubexpireSchedule;

/* Hints for errors about a schedule or a zone. */
#define SUBEXPIRE_SCHEDULE_FORMS "A schedule is 5 cron fields (minute hour day-of-month month day-of-week), such as \"0 2 * * *\"; or @hourly, @daily, @weekly, @monthly or @yearly; or \"N seconds\" with N from 1 to 59."
#define SUBEXPIRE_ZONE_FORMS "Use a time zone name from pg_timezone_names, such as UTC or Europe/Berlin; offsets such as +05:00 or UTC+3 are not accepted, because POSIX reads their sign the other way round."

extern pg_tz *subexpire_lookup_zone(const char *name);
extern bool subexpire_parse_schedule(const char *text,
									 SubexpireSchedule *schedule,
									 char **error);
extern TimestampTz subexpire_next_run(const SubexpireSchedule *schedule,
									  pg_tz *tz, TimestampTz after);

#endif							/* SUBEXPIRE_SCHEDULE_H */
