/*-------------------------------------------------------------------------
 *
 * schedule.c
 *	  The schedule: parse subexpire.schedule and compute when it next fires.
 *
 * A schedule is a 5-field cron expression (minute, hour, day of month,
 * month, day of week), one of the macros @hourly, @daily, @midnight,
 * @weekly, @monthly, @yearly and @annually, or "N seconds" (1 to 59).
 *
 * Cron fields are matched against wall-clock time in a time zone, read with
 * PostgreSQL's own time zone code.  Each scheduled wall-clock time fires
 * once: a time skipped by a forward jump fires at the first instant after
 * the jump, and a time repeated by a backward jump fires at its first
 * occurrence.  As in Vixie cron, when both day fields are restricted (do
 * not start with '*'), a day matches when either matches.
 *
 * "N seconds" fires at the instants that are whole multiples of N seconds
 * since the Unix epoch, so that its times are the same whoever computes
 * them.
 *
 * The parser does not ereport: it returns a message, so that the setting's
 * check hook and subexpire_next_runs() (src/next_run.c) can each report
 * it in their own way.  This file holds no SQL-callable function and needs
 * nothing from the backend but memory allocation, the calendar, the time
 * zone database and the interrupt check, so that test/fuzz/ can build it
 * outside the server.
 *
 * IDENTIFICATION
 *	  src/schedule.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "miscadmin.h"
#include "pgtime.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "schedule.h"

/*
 * How far ahead to look for a matching day.  Whether a day matches depends
 * only on its month, day of the month and day of the week, and the longest
 * wait for a day with a given three (over the 400 years after which the
 * calendar repeats) is 14609 days: 29 February on a given day of the week,
 * across a century year that is not a leap year, such as the Sundays
 * 2488-02-29 and 2528-02-29 ("0 0 29 2" and a day-of-week field of "*"
 * stepped by 7).  The search starts the day before that of "after".
 */
#define SEARCH_DAYS (14609 + 2)

typedef struct CronField
{
	const char *name;
	int			min;
	int			max;
	const char *const *names;	/* names of the values from min, or NULL */
} CronField;

static const char *const month_names[] = {
	"jan", "feb", "mar", "apr", "may", "jun",
	"jul", "aug", "sep", "oct", "nov", "dec", NULL
};

static const char *const weekday_names[] = {
	"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL
};

static const CronField cron_fields[5] = {
	{"minute", 0, 59, NULL},
	{"hour", 0, 23, NULL},
	{"day-of-month", 1, 31, NULL},
	{"month", 1, 12, month_names},
	{"day-of-week", 0, 7, weekday_names},	/* 7 is Sunday too */
};

static const struct
{
	const char *name;
	const char *cron;
}			macros[] = {
	{"@yearly", "0 0 1 1 *"},
	{"@annually", "0 0 1 1 *"},
	{"@monthly", "0 0 1 * *"},
	{"@weekly", "0 0 * * 0"},
	{"@daily", "0 0 * * *"},
	{"@midnight", "0 0 * * *"},
	{"@hourly", "0 * * * *"},
};

/*
 * Read one value of a field at *p: a number, or a name where the field has
 * names.  Returns false, with *error set, when there is none or it is out
 * of the field's range.
 */
static bool
parse_value(const char **p, const CronField *field, const char *item,
			int *value, char **error)
{
	const char *s = *p;

	if (isdigit((unsigned char) *s))
	{
		long		v = 0;

		while (isdigit((unsigned char) *s))
		{
			v = v * 10 + (*s - '0');
			if (v > 1000)
				break;
			s++;
		}
		if (isdigit((unsigned char) *s) || v < field->min || v > field->max)
		{
			*error = psprintf("%s field \"%s\": values must be from %d to %d",
							  field->name, item, field->min, field->max);
			return false;
		}
		*value = (int) v;
		*p = s;
		return true;
	}

	if (field->names != NULL && isalpha((unsigned char) *s))
	{
		for (int i = 0; field->names[i] != NULL; i++)
		{
			if (pg_strncasecmp(s, field->names[i], 3) == 0 &&
				!isalpha((unsigned char) s[3]))
			{
				*value = field->min + i;
				*p = s + 3;
				return true;
			}
		}
	}

	if (field->names != NULL)
		*error = psprintf("%s field \"%s\": expected a number from %d to %d or a three-letter name such as %s",
						  field->name, item, field->min, field->max,
						  field->names[0]);
	else
		*error = psprintf("%s field \"%s\": expected a number from %d to %d",
						  field->name, item, field->min, field->max);
	return false;
}

/*
 * Parse one cron field (a comma-separated list of items: "*", a value, a
 * range "a-b", each optionally followed by "/step") into a bit set.
 */
static bool
parse_field(const char *text, const CronField *field, uint64 *bits,
			bool *restricted, char **error)
{
	char	   *copy = pstrdup(text);
	char	   *item;
	char	   *save;

	*bits = 0;
	*restricted = (text[0] != '*');

	if (text[0] == ',' || text[strlen(text) - 1] == ',' ||
		strstr(text, ",,") != NULL)
	{
		*error = psprintf("%s field \"%s\": a list must not have an empty item",
						  field->name, text);
		return false;
	}

	for (item = strtok_r(copy, ",", &save); item != NULL;
		 item = strtok_r(NULL, ",", &save))
	{
		const char *p = item;
		int			first;
		int			last;
		int			step = 1;

		if (*p == '*')
		{
			first = field->min;
			last = field->max;
			p++;
		}
		else
		{
			if (!parse_value(&p, field, item, &first, error))
				return false;
			last = first;
			if (*p == '-')
			{
				p++;
				if (!parse_value(&p, field, item, &last, error))
					return false;
				if (last < first)
				{
					*error = psprintf("%s field \"%s\": a range must run from the lower value to the higher",
									  field->name, item);
					return false;
				}
			}
			else if (*p == '/')
				last = field->max;	/* "a/step": from a to the end */
		}

		if (*p == '/')
		{
			long		s = 0;

			p++;
			if (!isdigit((unsigned char) *p))
			{
				*error = psprintf("%s field \"%s\": a step must be a whole number after \"/\"",
								  field->name, item);
				return false;
			}
			while (isdigit((unsigned char) *p) && s <= 1000)
				s = s * 10 + (*p++ - '0');
			if (s < 1 || s > field->max - field->min + 1 ||
				isdigit((unsigned char) *p))
			{
				*error = psprintf("%s field \"%s\": a step must be from 1 to %d",
								  field->name, item,
								  field->max - field->min + 1);
				return false;
			}
			step = (int) s;
		}

		if (*p != '\0')
		{
			*error = psprintf("%s field \"%s\": unexpected \"%s\"",
							  field->name, item, p);
			return false;
		}

		for (int v = first; v <= last; v += step)
			*bits |= UINT64CONST(1) << v;
	}

	if (*bits == 0)
	{
		*error = psprintf("%s field \"%s\" is empty", field->name, text);
		return false;
	}
	pfree(copy);
	return true;
}

/* "N seconds" (or "N second"), N from 1 to 59. */
static bool
parse_seconds(const char *text, SubexpireSchedule *schedule, char **error,
			  bool *matched)
{
	const char *p = text;
	long		n = 0;

	*matched = false;
	if (!isdigit((unsigned char) *p))
		return false;
	while (isdigit((unsigned char) *p) && n <= 1000)
		n = n * 10 + (*p++ - '0');
	while (isdigit((unsigned char) *p))
		p++;
	if (!isspace((unsigned char) *p))
		return false;
	while (isspace((unsigned char) *p))
		p++;
	if (pg_strcasecmp(p, "seconds") != 0 && pg_strcasecmp(p, "second") != 0)
		return false;

	*matched = true;
	if (n < 1 || n > 59)
	{
		*error = psprintf("\"%s\": the seconds form takes from 1 to 59 seconds; for longer intervals use a cron expression such as \"*/5 * * * *\"",
						  text);
		return false;
	}
	schedule->interval_seconds = (int) n;
	return true;
}

/*
 * Parse a schedule.  Returns false, with *error set to a message that names
 * the part that is wrong, when it does not parse.
 */
bool
subexpire_parse_schedule(const char *text, SubexpireSchedule *schedule,
						 char **error)
{
	char	   *copy;
	char	   *start;
	char	   *end;
	char	   *fields[5];
	int			nfields = 0;
	char	   *save;
	char	   *token;
	uint64		bits[5];
	bool		restricted[5];
	bool		matched;

	memset(schedule, 0, sizeof(SubexpireSchedule));

	/* Trim surrounding white space. */
	copy = pstrdup(text);
	for (start = copy; isspace((unsigned char) *start); start++)
		;
	end = start + strlen(start);
	while (end > start && isspace((unsigned char) end[-1]))
		*--end = '\0';

	if (*start == '\0')
	{
		*error = pstrdup("the schedule is empty");
		return false;
	}

	if (*start == '@')
	{
		for (int i = 0; i < lengthof(macros); i++)
			if (pg_strcasecmp(start, macros[i].name) == 0)
				return subexpire_parse_schedule(macros[i].cron, schedule, error);
		*error = psprintf("\"%s\" is not a known macro; the macros are @hourly, @daily, @midnight, @weekly, @monthly, @yearly and @annually",
						  start);
		return false;
	}

	if (parse_seconds(start, schedule, error, &matched) || matched)
		return matched && schedule->interval_seconds > 0;

	for (token = strtok_r(start, " \t\r\n", &save); token != NULL;
		 token = strtok_r(NULL, " \t\r\n", &save))
	{
		if (nfields == 5)
		{
			nfields++;
			break;
		}
		fields[nfields++] = token;
	}
	if (nfields != 5)
	{
		*error = psprintf("\"%s\" has %s5 fields; a cron schedule has exactly 5: minute hour day-of-month month day-of-week",
						  text, nfields > 5 ? "more than " : "fewer than ");
		return false;
	}

	for (int i = 0; i < 5; i++)
		if (!parse_field(fields[i], &cron_fields[i], &bits[i], &restricted[i],
						 error))
			return false;

	schedule->minutes = bits[0];
	schedule->hours = (uint32) bits[1];
	schedule->days_of_month = (uint32) bits[2];
	schedule->months = (uint16) bits[3];
	/* 7 is Sunday, as 0 is. */
	schedule->days_of_week = (uint8) ((bits[4] | (bits[4] >> 7)) & 0x7F);
	schedule->day_of_month_restricted = restricted[2];
	schedule->day_of_week_restricted = restricted[4];
	pfree(copy);
	return true;
}

/*
 * The zone of the time zone database (pg_timezone_names) called "name",
 * or NULL when there is none by that name, or it counts leap seconds,
 * which timestamps do not.  This is the one zone check: the setting
 * subexpire.timezone and subexpire_next_runs() both use it.
 *
 * pg_tzset() also accepts POSIX specifications such as "UTC+3" or
 * "+05:00", and reads their sign the other way round from what most people
 * mean (UTC+3 is three hours behind UTC): a schedule read in one of them
 * would fire at the wrong hour, so they are refused.  Enumerating the
 * database reads every zone file, so the last name found is remembered:
 * the setting's check hook runs at every reload, in every process.
 */
pg_tz *
subexpire_lookup_zone(const char *name)
{
	static char last_found[TZ_STRLEN_MAX + 1] = "";
	pg_tz	   *tz = pg_tzset(name);
	pg_tzenum  *zones;
	pg_tz	   *zone;
	bool		found = false;

	if (tz == NULL || !pg_tz_acceptable(tz))
		return NULL;
	if (last_found[0] != '\0' && pg_strcasecmp(last_found, name) == 0)
		return tz;
	zones = pg_tzenumerate_start();
	while (!found && (zone = pg_tzenumerate_next(zones)) != NULL)
		found = (pg_strcasecmp(pg_get_timezone_name(zone), name) == 0);
	pg_tzenumerate_end(zones);
	if (!found)
		return NULL;
	strlcpy(last_found, name, sizeof(last_found));
	return tz;
}

/*
 * Seconds east of UTC of zone tz at instant t.  Before the first instant
 * that the calendar can read, the offset there: the day before the first
 * day of the range is read to find times on that first day.
 */
static int
utc_offset(TimestampTz t, pg_tz *tz)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			seconds_west;

	if (t < MIN_TIMESTAMP)
		t = MIN_TIMESTAMP;
	if (timestamp2tm(t, &seconds_west, &tm, &fsec, NULL, tz) != 0)
		return 0;				/* out of range: the caller gives up there */
	return -seconds_west;
}

/*
 * The instant at which wall-clock time "local" (microseconds since
 * 2000-01-01 00:00 on the wall clock) occurs in tz: for a time repeated by
 * a backward jump, its first occurrence; for a time skipped by a forward
 * jump, the instant of the jump.  Offsets a day before and a day after
 * bracket any single transition near it.
 */
static TimestampTz
wall_clock_instant(Timestamp local, pg_tz *tz)
{
	int			offset_before = utc_offset(local - USECS_PER_DAY, tz);
	int			offset_after = utc_offset(local + USECS_PER_DAY, tz);
	TimestampTz with_before = local - (TimestampTz) offset_before * USECS_PER_SEC;
	TimestampTz with_after = local - (TimestampTz) offset_after * USECS_PER_SEC;
	bool		before_valid = utc_offset(with_before, tz) == offset_before;
	bool		after_valid = utc_offset(with_after, tz) == offset_after;
	TimestampTz low;
	TimestampTz high;

	if (before_valid && after_valid)
		return Min(with_before, with_after);
	if (before_valid)
		return with_before;
	if (after_valid)
		return with_after;

	/*
	 * Skipped: the jump lies between the two readings.  Find its instant, to
	 * the second, by bisection: the offset there is offset_after.
	 */
	low = Min(with_before, with_after);
	high = Max(with_before, with_after);
	while (high - low > USECS_PER_SEC)
	{
		TimestampTz middle = low + (high - low) / 2;

		middle -= middle % USECS_PER_SEC;
		if (middle <= low)
			break;
		if (utc_offset(middle, tz) == offset_after)
			high = middle;
		else
			low = middle;
	}
	return high;
}

static bool
day_matches(const SubexpireSchedule *schedule, int julian_day)
{
	int			year;
	int			month;
	int			day;
	bool		dom;
	bool		dow;

	j2date(julian_day, &year, &month, &day);
	if ((schedule->months & (1 << month)) == 0)
		return false;
	dom = (schedule->days_of_month & (((uint32) 1) << day)) != 0;
	dow = (schedule->days_of_week & (1 << j2day(julian_day))) != 0;
	if (schedule->day_of_month_restricted && schedule->day_of_week_restricted)
		return dom || dow;
	return dom && dow;
}

/*
 * The first time after "after" at which the schedule fires, reading cron
 * fields in zone tz; DT_NOEND when it never does (such as "0 0 30 2 *").
 */
TimestampTz
subexpire_next_run(const SubexpireSchedule *schedule, pg_tz *tz,
				   TimestampTz after)
{
	const int64 unix_epoch = (int64) (UNIX_EPOCH_JDATE - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY;
	struct pg_tm tm;
	fsec_t		fsec;
	int			seconds_west;
	int			first_day;
	int			last_minute = 0;

	if (TIMESTAMP_NOT_FINITE(after))
		return DT_NOEND;

	if (schedule->interval_seconds > 0)
	{
		int64		step = (int64) schedule->interval_seconds * USECS_PER_SEC;
		int64		into_step;
		TimestampTz next;

		/*
		 * How far "after" is into its step since 1970, from the remainders of
		 * each: "after - unix_epoch" overflows in the last 30 years of the
		 * range.
		 */
		into_step = (after % step - unix_epoch % step) % step;
		if (into_step < 0)
			into_step += step;
		next = after - into_step + step;
		if (!IS_VALID_TIMESTAMP(next))
			return DT_NOEND;	/* the next one is beyond the last timestamp */
		return next;
	}

	for (int minute = 0; minute < 60; minute++)
		if (schedule->minutes & (UINT64CONST(1) << minute))
			last_minute = minute;

	/* Start from the wall-clock day of "after" (and the day before it). */
	if (timestamp2tm(after, &seconds_west, &tm, &fsec, NULL, tz) != 0)
		return DT_NOEND;
	first_day = date2j(tm.tm_year, tm.tm_mon, tm.tm_mday) - 1;

	for (int julian_day = first_day; julian_day < first_day + SEARCH_DAYS;
		 julian_day++)
	{
		Timestamp	midnight;

		CHECK_FOR_INTERRUPTS();

		/*
		 * From the second last day of the range on, it never fires: finding
		 * the instant of a time there reads the zone a day later, past the
		 * end.  (The first days searched may be before the range's first day:
		 * in a zone west of UTC, their times can still be after "after".)
		 */
		if (julian_day >= TIMESTAMP_END_JULIAN - 2)
			return DT_NOEND;
		if (!day_matches(schedule, julian_day))
			continue;
		midnight = (Timestamp) (julian_day - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY;

		for (int hour = 0; hour < 24; hour++)
		{
			if ((schedule->hours & (((uint32) 1) << hour)) == 0)
				continue;

			/*
			 * Wall-clock times occur in their order, so when the hour's last
			 * matching minute is not after "after", none of its minutes is:
			 * skip the hour, rather than look at each of its minutes.
			 */
			if (wall_clock_instant(midnight +
								   (hour * 60 + last_minute) * USECS_PER_MINUTE,
								   tz) <= after)
				continue;
			for (int minute = 0; minute < 60; minute++)
			{
				TimestampTz instant;

				if ((schedule->minutes & (UINT64CONST(1) << minute)) == 0)
					continue;
				instant = wall_clock_instant(midnight +
											 (hour * 60 + minute) * USECS_PER_MINUTE,
											 tz);
				if (instant > after)
					return instant;
			}
		}
	}
	return DT_NOEND;
}
