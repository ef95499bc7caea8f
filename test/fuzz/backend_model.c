/*-------------------------------------------------------------------------
 *
 * backend_model.c
 *	  What src/schedule.c needs from the server, for a fuzzing build.
 *
 * schedule.c is backend code: it allocates with palloc, reads the calendar
 * with date2j/j2date/j2day, reads wall-clock time with timestamp2tm in a
 * pg_tz from pg_tzset, enumerates the zones, and checks for interrupts.  None of these is in a
 * library a program can link, so this file provides them, written for the
 * harness and not copied from PostgreSQL:
 *
 * - memory: palloc, pstrdup, psprintf and pfree over malloc, each block on
 *	 a list that the harness frees after each input, as the server frees a
 *	 memory context (so that the parser's error paths, which leave their
 *	 copies to the context, are not leaks), while pfree frees at once, so
 *	 that AddressSanitizer sees a use after pfree or a double pfree;
 * - the calendar: proleptic Gregorian, by the days-from-civil algorithm;
 * - time zones: a handful of zones with fixed offsets, yearly DST-like
 *	 jumps forward and back (of 30 minutes, 1 hour and 2 hours, at 02:00
 *	 and at midnight, north and south of the equator), one-off jumps of a
 *	 whole day forward and back (as Pacific/Apia skipped 2011-12-30), one
 *	 of a few minutes and seconds from local mean time to standard time,
 *	 and one zone that pg_tz_acceptable refuses, as it refuses a zone with
 *	 leap seconds;
 * - interrupts: none are ever pending; ProcessInterrupts aborts.
 *
 * The model's limits (see README.md): its zones are simpler than IANA's
 * (a rule applies in every year, from 4714 BC to 294276 AD, and no zone
 * changes its offset twice within two days), and timestamp2tm follows the
 * server's contract only where schedule.c relies on it: -1 before the first
 * Julian day, the wall clock in the zone otherwise.
 *
 * IDENTIFICATION
 *	  test/fuzz/backend_model.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/int.h"
#include "datatype/timestamp.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "utils/datetime.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "backend_model.h"

/* ---------------------------------------------------------------- memory */

#define CHUNK_MAGIC UINT64CONST(0x5355424558504952) /* "SUBEXPIR" */

typedef struct Chunk
{
	struct Chunk *prev;
	struct Chunk *next;
	uint64		magic;
	uint64		size;
} Chunk;

/* The blocks palloc'd and not yet pfree'd: a ring through this head. */
static Chunk live = {&live, &live, 0, 0};

static void
model_abort(const char *what)
{
	fprintf(stderr, "backend model: %s\n", what);
	abort();
}

void *
palloc(Size size)
{
	Chunk	   *chunk;

	/* The server raises an ERROR here; schedule.c never asks for so much. */
	if (!AllocSizeIsValid(size))
		model_abort("palloc: invalid allocation size");
	chunk = malloc(sizeof(Chunk) + size);
	if (chunk == NULL)
		model_abort("palloc: out of memory");
	chunk->magic = CHUNK_MAGIC;
	chunk->size = size;
	chunk->next = live.next;
	chunk->prev = &live;
	live.next->prev = chunk;
	live.next = chunk;
	return chunk + 1;
}

void
pfree(void *pointer)
{
	Chunk	   *chunk = ((Chunk *) pointer) - 1;

	if (pointer == NULL || chunk->magic != CHUNK_MAGIC)
		model_abort("pfree of a pointer that palloc did not return");
	chunk->prev->next = chunk->next;
	chunk->next->prev = chunk->prev;
	chunk->magic = 0;
	free(chunk);
}

char *
pstrdup(const char *in)
{
	size_t		len = strlen(in);
	char	   *out = palloc(len + 1);

	memcpy(out, in, len + 1);
	return out;
}

char *
psprintf(const char *fmt,...)
{
	va_list		args;
	int			len;
	char	   *out;

	va_start(args, fmt);
	len = vsnprintf(NULL, 0, fmt, args);
	va_end(args);
	if (len < 0)
		model_abort("psprintf: bad format");
	out = palloc(len + 1);
	va_start(args, fmt);
	vsnprintf(out, len + 1, fmt, args);
	va_end(args);
	return out;
}

void
model_free_all(void)
{
	while (live.next != &live)
		pfree(live.next + 1);
}

/* ------------------------------------------------------------ interrupts */

volatile sig_atomic_t InterruptPending = false;

void
ProcessInterrupts(void)
{
	model_abort("ProcessInterrupts called, but no interrupt was ever raised");
}

/* -------------------------------------------------------------- calendar */

int64
model_floor_div(int64 a, int64 b)
{
	int64		q = a / b;

	if ((a % b != 0) && ((a < 0) != (b < 0)))
		q--;
	return q;
}

/*
 * Days since 1970-01-01 of a date of the proleptic Gregorian calendar
 * (month 1 to 12; a day past the month's end counts on into the next).
 * Years are counted from March, so that the leap day ends a year, and in
 * eras of 400 years, after which the calendar repeats.
 */
int64
model_days_from_civil(int64 year, int month, int day)
{
	int64		y = year - (month <= 2 ? 1 : 0);
	int64		era = model_floor_div(y, 400);
	int64		year_of_era = y - era * 400;
	int64		month_from_march = (month + 9) % 12;
	int64		day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
	int64		day_of_era = year_of_era * 365 + year_of_era / 4 -
	year_of_era / 100 + day_of_year;

	return era * 146097 + day_of_era - 719468;
}

/* The inverse of model_days_from_civil. */
void
model_civil_from_days(int64 days, int64 *year, int *month, int *day)
{
	int64		z = days + 719468;
	int64		era = model_floor_div(z, 146097);
	int64		day_of_era = z - era * 146097;
	int64		year_of_era = (day_of_era - day_of_era / 1460 +
							   day_of_era / 36524 - day_of_era / 146096) / 365;
	int64		day_of_year = day_of_era -
	(365 * year_of_era + year_of_era / 4 - year_of_era / 100);
	int64		month_from_march = (5 * day_of_year + 2) / 153;

	*day = (int) (day_of_year - (153 * month_from_march + 2) / 5 + 1);
	*month = (int) (month_from_march < 10 ? month_from_march + 3 :
					month_from_march - 9);
	*year = year_of_era + era * 400 + (*month <= 2 ? 1 : 0);
}

/* Day of the week (0 = Sunday) of a day counted from 1970-01-01, a Thursday. */
int
model_weekday(int64 days)
{
	return (int) (days + 4 - model_floor_div(days + 4, 7) * 7);
}

/* Julian day numbers: the server's date2j, j2date and j2day. */
int
date2j(int year, int month, int day)
{
	return (int) (model_days_from_civil(year, month, day) + UNIX_EPOCH_JDATE);
}

void
j2date(int jd, int *year, int *month, int *day)
{
	int64		y;

	model_civil_from_days((int64) jd - UNIX_EPOCH_JDATE, &y, month, day);
	*year = (int) y;
}

int
j2day(int jd)
{
	return model_weekday((int64) jd - UNIX_EPOCH_JDATE);
}

/* ------------------------------------------------------------ time zones */

typedef enum ZoneKind
{
	ZONE_FIXED,					/* always std_offset */
	ZONE_YEARLY,				/* dst_offset from a date to a date, every
								 * year */
	ZONE_ONE_OFF				/* std_offset, then the changes in "changes" */
} ZoneKind;

/* An instant given by its UTC date and second of the day. */
typedef struct UtcDate
{
	int			year;			/* ZONE_ONE_OFF only; yearly rules: any year */
	int			month;
	int			day;
	int			second;
} UtcDate;

typedef struct OneOffChange
{
	UtcDate		at;
	int			offset_after;
} OneOffChange;

struct pg_tz
{
	const char *name;
	ZoneKind	kind;
	bool		acceptable;		/* what pg_tz_acceptable says */
	int			std_offset;		/* seconds east of UTC */
	int			dst_offset;		/* ZONE_YEARLY: during DST */
	UtcDate		dst_start;		/* ZONE_YEARLY: std_offset to dst_offset */
	UtcDate		dst_end;		/* ZONE_YEARLY: dst_offset to std_offset */
	const OneOffChange *changes;	/* ZONE_ONE_OFF: in time order */
	int			nchanges;
};

#define H 3600
#define M 60

/* A whole day forward (-10:00 to +14:00), then, in 2031, a day back. */
static const OneOffChange dateline_changes[] = {
	{{2011, 12, 30, 10 * H}, 14 * H},	/* local 2011-12-30 00:00 is 12-31
										 * 00:00 */
	{{2031, 6, 1, 0}, -10 * H}, /* local 2031-06-01 14:00 is 05-31 14:00 */
};

/*
 * Local mean time, +00:53:28, until standard time, +01:00, at local midnight
 * (as Europe/Berlin in 1893): a jump forward of 6 minutes 32 seconds at an
 * instant that is no whole minute, 1893-03-31 23:06:32 UTC.
 */
static const OneOffChange lmt_changes[] = {
	{{1893, 3, 31, 23 * H + 6 * M + 32}, 1 * H},
};

static struct pg_tz zones[] = {
	{"UTC", ZONE_FIXED, true, 0},
	{"Test/Plus0530", ZONE_FIXED, true, 5 * H + 30 * M},
	{"Test/Minus0930", ZONE_FIXED, true, -(9 * H + 30 * M)},
	{"Test/Plus1400", ZONE_FIXED, true, 14 * H},
	{"Test/Minus1200", ZONE_FIXED, true, -12 * H},
	/* Not a whole minute, as local mean times were. */
	{"Test/Plus051731", ZONE_FIXED, true, 5 * H + 17 * M + 31},

	/*
	 * North: -05:00, and -04:00 from 02:00 local on 8 March (02:00 to 02:59
	 * skipped) to 02:00 local on 1 November (01:00 to 01:59 twice).
	 */
	{"Test/North", ZONE_YEARLY, true, -5 * H, -4 * H,
	{0, 3, 8, 7 * H}, {0, 11, 1, 6 * H}},

	/*
	 * South: +10:30, and +11:00 from 02:00 local on 4 October (02:00 to 02:29
	 * skipped) to 02:00 local on 5 April (01:30 to 01:59 twice): DST across
	 * the new year, by half an hour.
	 */
	{"Test/South", ZONE_YEARLY, true, 10 * H + 30 * M, 11 * H,
	{0, 10, 3, 15 * H + 30 * M}, {0, 4, 4, 15 * H}},

	/*
	 * Midnight: -04:00, and -03:00 from local midnight on 6 September (00:00
	 * to 00:59 skipped) to local midnight on 5 April (back to 23:00 on 4
	 * April: 23:00 to 23:59 twice, across days).
	 */
	{"Test/Midnight", ZONE_YEARLY, true, -4 * H, -3 * H,
	{0, 9, 6, 4 * H}, {0, 4, 5, 3 * H}},

	/* Two hours: +00:00, and +02:00 from 01:00 UTC on 29 March to 25 October. */
	{"Test/TwoHours", ZONE_YEARLY, true, 0, 2 * H,
	{0, 3, 29, 1 * H}, {0, 10, 25, 1 * H}},

	{"Test/Dateline", ZONE_ONE_OFF, true, -10 * H, 0, {0}, {0},
	dateline_changes, lengthof(dateline_changes)},

	{"Test/LocalMeanTime", ZONE_ONE_OFF, true, 53 * M + 28, 0, {0}, {0},
	lmt_changes, lengthof(lmt_changes)},

	/* A zone with leap seconds, which pg_tz_acceptable refuses. */
	{"Test/Leap", ZONE_FIXED, false, 0},
};

static int64
utc_date_seconds(const UtcDate *date, int64 year)
{
	return (model_days_from_civil(year, date->month, date->day) -
			MODEL_EPOCH_DAYS) * SECS_PER_DAY + date->second;
}

static int64
year_of_seconds(int64 seconds)
{
	int64		year;
	int			month;
	int			day;

	model_civil_from_days(model_floor_div(seconds, SECS_PER_DAY) +
						  MODEL_EPOCH_DAYS, &year, &month, &day);
	return year;
}

int
model_zone_count(void)
{
	return lengthof(zones);
}

pg_tz *
model_zone(int i)
{
	return &zones[i];
}

const char *
model_zone_name(const pg_tz *tz)
{
	return tz->name;
}

bool
model_zone_acceptable(const pg_tz *tz)
{
	return tz->acceptable;
}

/*
 * The changes of offset of zone tz from "from" to "to" (seconds since
 * 2000-01-01, both included), in time order.  Aborts when there are more
 * than "max": the harness asks only about a few days.
 */
int
model_transitions(const pg_tz *tz, int64 from, int64 to,
				  ModelTransition *out, int max)
{
	int			n = 0;

	if (tz->kind == ZONE_ONE_OFF)
	{
		for (int i = 0; i < tz->nchanges; i++)
		{
			int64		at = utc_date_seconds(&tz->changes[i].at,
											  tz->changes[i].at.year);

			if (at < from || at > to)
				continue;
			if (n == max)
				model_abort("model_transitions: too many");
			out[n].at = at;
			out[n].offset_after = tz->changes[i].offset_after;
			n++;
		}
	}
	else if (tz->kind == ZONE_YEARLY)
	{
		for (int64 year = year_of_seconds(from) - 1;
			 year <= year_of_seconds(to) + 1; year++)
		{
			ModelTransition pair[2];

			pair[0].at = utc_date_seconds(&tz->dst_start, year);
			pair[0].offset_after = tz->dst_offset;
			pair[1].at = utc_date_seconds(&tz->dst_end, year);
			pair[1].offset_after = tz->std_offset;
			for (int k = 0; k < 2; k++)
			{
				int			j;

				if (pair[k].at < from || pair[k].at > to)
					continue;
				if (n == max)
					model_abort("model_transitions: too many");
				/* insert in time order */
				for (j = n; j > 0 && out[j - 1].at > pair[k].at; j--)
					out[j] = out[j - 1];
				out[j] = pair[k];
				n++;
			}
		}
	}
	return n;
}

/* Seconds east of UTC of zone tz at "seconds" since 2000-01-01 00:00 UTC. */
int
model_offset_at(const pg_tz *tz, int64 seconds)
{
	int			offset = tz->std_offset;

	if (tz->kind == ZONE_ONE_OFF)
	{
		for (int i = 0; i < tz->nchanges; i++)
			if (utc_date_seconds(&tz->changes[i].at,
								 tz->changes[i].at.year) <= seconds)
				offset = tz->changes[i].offset_after;
	}
	else if (tz->kind == ZONE_YEARLY)
	{
		int64		year = year_of_seconds(seconds);
		int64		latest = PG_INT64_MIN;

		/* The last change at or before "seconds": last year has both. */
		for (int64 y = year - 1; y <= year; y++)
		{
			int64		start = utc_date_seconds(&tz->dst_start, y);
			int64		end = utc_date_seconds(&tz->dst_end, y);

			if (start <= seconds && start > latest)
			{
				latest = start;
				offset = tz->dst_offset;
			}
			if (end <= seconds && end > latest)
			{
				latest = end;
				offset = tz->std_offset;
			}
		}
	}
	return offset;
}

pg_tz *
pg_tzset(const char *name)
{
	if (strlen(name) > TZ_STRLEN_MAX)
		return NULL;
	for (int i = 0; i < lengthof(zones); i++)
		if (pg_strcasecmp(name, zones[i].name) == 0)
			return &zones[i];
	return NULL;
}

bool
pg_tz_acceptable(pg_tz *tz)
{
	return tz->acceptable;
}

/*
 * The server's enumeration of the time zone database, over the model's
 * zones; as the server's, it leaves out zones that are not acceptable.
 */
struct pg_tzenum
{
	int			next;
};

pg_tzenum *
pg_tzenumerate_start(void)
{
	pg_tzenum  *dir = palloc(sizeof(pg_tzenum));

	dir->next = 0;
	return dir;
}

pg_tz *
pg_tzenumerate_next(pg_tzenum *dir)
{
	while (dir->next < lengthof(zones))
	{
		pg_tz	   *tz = &zones[dir->next++];

		if (tz->acceptable)
			return tz;
	}
	return NULL;
}

void
pg_tzenumerate_end(pg_tzenum *dir)
{
	pfree(dir);
}

const char *
pg_get_timezone_name(pg_tz *tz)
{
	return tz->name;
}

/*
 * The server's timestamp2tm: the fields of instant dt, on the wall clock of
 * zone "attimezone" when tzp is not NULL (with *tzp its offset in seconds
 * west of UTC), in UTC otherwise.  Returns -1 when dt is before the first
 * Julian day, which the server's calendar cannot read.
 */
int
timestamp2tm(Timestamp dt, int *tzp, struct pg_tm *tm, fsec_t *fsec,
			 const char **tzn, pg_tz *attimezone)
{
	int64		julian = model_floor_div(dt, USECS_PER_DAY) + POSTGRES_EPOCH_JDATE;
	int64		local = dt;
	int64		days;
	int64		usecs;
	int64		year;
	int			offset = 0;

	if (julian < 0 || julian > PG_INT32_MAX)
		return -1;

	if (tzp != NULL)
	{
		/* schedule.c always names its zone; the server would use TimeZone */
		if (attimezone == NULL)
			model_abort("timestamp2tm without a zone");
		offset = model_offset_at(attimezone,
								 model_floor_div(dt, USECS_PER_SEC));
		if (pg_add_s64_overflow(dt, (int64) offset * USECS_PER_SEC, &local))
			return -1;
		*tzp = -offset;
	}

	days = model_floor_div(local, USECS_PER_DAY);
	usecs = local - days * USECS_PER_DAY;
	model_civil_from_days(days + MODEL_EPOCH_DAYS, &year, &tm->tm_mon,
						  &tm->tm_mday);
	tm->tm_year = (int) year;
	tm->tm_hour = (int) (usecs / USECS_PER_HOUR);
	tm->tm_min = (int) (usecs / USECS_PER_MINUTE % MINS_PER_HOUR);
	tm->tm_sec = (int) (usecs / USECS_PER_SEC % SECS_PER_MINUTE);
	*fsec = (fsec_t) (usecs % USECS_PER_SEC);
	tm->tm_wday = model_weekday(days + MODEL_EPOCH_DAYS);
	tm->tm_yday = (int) (days + MODEL_EPOCH_DAYS -
						 model_days_from_civil(year, 1, 1) + 1);
	if (tzp != NULL)
	{
		tm->tm_isdst = (offset != attimezone->std_offset);
		tm->tm_gmtoff = offset;
		tm->tm_zone = attimezone->name;
	}
	else
	{
		tm->tm_isdst = -1;
		tm->tm_gmtoff = 0;
		tm->tm_zone = NULL;
	}
	if (tzn != NULL)
		*tzn = tm->tm_zone;
	return 0;
}
