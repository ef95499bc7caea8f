/*-------------------------------------------------------------------------
 *
 * fuzz_schedule.c
 *	  libFuzzer harness for the schedule: subexpire_parse_schedule and
 *	  subexpire_next_run (src/schedule.c), built outside the server over
 *	  the memory, calendar and time zone model of backend_model.c.
 *
 * An input is text: a first line, the schedule, and an optional second
 * line, the instant to start from and the zone:
 *
 *		30 2 * * *
 *		2026-03-08 06:00:00 Test/North
 *
 * The instant is "YYYY-MM-DD HH:MM:SS[.ffffff]" in UTC (years numbered
 * astronomically: 1 BC is 0), "@N", N microseconds since 2000-01-01 UTC,
 * or "infinity" or "-infinity"; a finite one is brought into the range of
 * timestamptz.  A zone name the model does not know picks one of its zones
 * by a hash of the name.
 *
 * Beyond "no crash, no hang, no sanitizer report", each input checks:
 *
 * - the parser: it accepts or refuses with a message; what it accepts has
 *	 every field within its bounds and not empty; a reference parser,
 *	 written here from the documented forms, accepts and refuses the same
 *	 and reads the same; upper or lower case and surrounding blanks change
 *	 nothing;
 * - the next three times from the instant, each from the one before (from
 *	 an infinite instant, "never"): each is strictly after the one before,
 *	 or DT_NOEND ("never"); each is the time that an oracle written here,
 *	 from the rules in schedule.c's header and the model's exact
 *	 transitions, says; and each is, on its own, a time the schedule fires
 *	 at: for cron, the wall clock there matches the fields at a whole minute
 *	 and is its first occurrence, or the instant is a forward jump that
 *	 skipped a matching minute; for "N seconds", a whole multiple of N
 *	 seconds since 1970.
 *
 * A broken check prints the case and aborts, which libFuzzer reports as a
 * crash and saves as an input to replay.
 *
 * IDENTIFICATION
 *	  test/fuzz/fuzz_schedule.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "datatype/timestamp.h"
#include "pgtime.h"

#include "backend_model.h"
#include "schedule.h"

/* How many times to compute, each after the one before. */
#define NEXT_COUNT 3

/* Longest input worth reading (run.sh gives libFuzzer -max_len=1024). */
#define MAX_INPUT 8192

/* The oracle's search: 400 years, after which the calendar repeats. */
#define CALENDAR_CYCLE_DAYS 146097

/* The last days of the timestamp range, which schedule.c does not search. */
#define END_MARGIN (3 * USECS_PER_DAY)

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The case in progress, for the report of a failure. */
static const char *case_schedule;
static const char *case_zone;
static TimestampTz case_after;

static const char *
format_time(TimestampTz t, char *buf, size_t len)
{
	int64		days;
	int64		usecs;
	int64		year;
	int			month;
	int			day;

	if (t == DT_NOEND)
		return "DT_NOEND (never)";
	if (t == DT_NOBEGIN)
		return "DT_NOBEGIN";
	days = model_floor_div(t, USECS_PER_DAY);
	usecs = t - days * USECS_PER_DAY;
	model_civil_from_days(days + MODEL_EPOCH_DAYS, &year, &month, &day);
	snprintf(buf, len, "%04lld-%02d-%02d %02d:%02d:%02d.%06d UTC (@%lld)",
			 (long long) year, month, day,
			 (int) (usecs / USECS_PER_HOUR),
			 (int) (usecs / USECS_PER_MINUTE % MINS_PER_HOUR),
			 (int) (usecs / USECS_PER_SEC % SECS_PER_MINUTE),
			 (int) (usecs % USECS_PER_SEC), (long long) t);
	return buf;
}

static void
			fail(const char *fmt,...) pg_attribute_printf(1, 2);

static void
fail(const char *fmt,...)
{
	va_list		args;
	char		buf[128];

	fprintf(stderr, "\n==== schedule fuzz: check failed: ");
	va_start(args, fmt);
	vfprintf(stderr, fmt, args);
	va_end(args);
	fprintf(stderr, "\n     schedule: \"");
	for (const char *p = case_schedule; p && *p; p++)
		fprintf(stderr, isprint((unsigned char) *p) ? "%c" : "\\x%02x",
				(unsigned char) *p);
	fprintf(stderr, "\"\n     zone: %s\n     after: %s\n\n",
			case_zone ? case_zone : "(none)",
			format_time(case_after, buf, sizeof(buf)));
	abort();
}

/* ------------------------------------------------------------- the input */

static uint32
hash_string(const char *s)
{
	uint32		h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char) *s) * 16777619u;
	return h;
}

static int64
clamp64(int64 v, int64 low, int64 high)
{
	return v < low ? low : v > high ? high : v;
}

/*
 * Read the second line: the instant and the zone.  Anything that does not
 * read as an instant leaves the default, so that every input computes.
 */
static void
read_after_line(const char *line, TimestampTz *after, pg_tz **tz)
{
	const char *zone_text = line;
	char		zone_name[TZ_STRLEN_MAX + 2];
	long long	year;
	int			month;
	int			day;
	int			hour;
	int			minute;
	int			second;
	int			consumed = 0;
	size_t		len;

	while (isspace((unsigned char) *line))
		line++;
	if (strncmp(line, "infinity", 8) == 0 || strncmp(line, "-infinity", 9) == 0)
	{
		/* Neither the worker nor subexpire_next_runs() passes these. */
		*after = line[0] == '-' ? DT_NOBEGIN : DT_NOEND;
		zone_text = line + (line[0] == '-' ? 9 : 8);
	}
	else if (*line == '@')
	{
		char	   *end;

		*after = (TimestampTz) strtoll(line + 1, &end, 10);
		zone_text = end;
	}
	else if (sscanf(line, "%lld-%d-%d %d:%d:%d%n", &year, &month, &day,
					&hour, &minute, &second, &consumed) == 6)
	{
		const char *p = line + consumed;
		int64		usecs = 0;
		int			digits = 0;

		if (*p == '.')
		{
			for (p++; isdigit((unsigned char) *p); p++)
				if (digits++ < 6)
					usecs = usecs * 10 + (*p - '0');
			for (; digits < 6; digits++)
				usecs *= 10;
		}
		/* the years of timestamptz, so that nothing below overflows */
		year = clamp64(year, -4714, 294276);
		*after = (model_days_from_civil(year, (int) clamp64(month, 1, 12),
										(int) clamp64(day, 1, 31)) -
				  MODEL_EPOCH_DAYS) * USECS_PER_DAY +
			clamp64(hour, 0, 23) * USECS_PER_HOUR +
			clamp64(minute, 0, 59) * USECS_PER_MINUTE +
			clamp64(second, 0, 59) * USECS_PER_SEC + usecs;
		zone_text = p;
	}
	if (!TIMESTAMP_NOT_FINITE(*after))
		*after = clamp64(*after, MIN_TIMESTAMP, END_TIMESTAMP - 1);

	while (isspace((unsigned char) *zone_text))
		zone_text++;
	len = strcspn(zone_text, " \t\r\n");
	if (len == 0)
		return;
	if (len > TZ_STRLEN_MAX + 1)
		len = TZ_STRLEN_MAX + 1;
	memcpy(zone_name, zone_text, len);
	zone_name[len] = '\0';

	/* The lookup the server does; then any name picks some zone. */
	*tz = subexpire_lookup_zone(zone_name);
	if (*tz == NULL)
	{
		int			n = model_zone_count();
		int			i = (int) (hash_string(zone_name) % n);

		while (!model_zone_acceptable(model_zone(i)))
			i = (i + 1) % n;
		*tz = model_zone(i);
	}
}

/* ------------------------------------------------------------ the parser */

static void
check_parsed(const SubexpireSchedule *s)
{
	if (s->interval_seconds != 0)
	{
		if (s->interval_seconds < 1 || s->interval_seconds > 59)
			fail("seconds form with %d seconds", s->interval_seconds);
		if (s->minutes || s->hours || s->days_of_month || s->months ||
			s->days_of_week)
			fail("seconds form with cron fields set");
		return;
	}
	if (s->minutes == 0 || (s->minutes >> 60) != 0)
		fail("minutes 0x%llx", (unsigned long long) s->minutes);
	if (s->hours == 0 || (s->hours >> 24) != 0)
		fail("hours 0x%x", s->hours);
	if (s->days_of_month == 0 || (s->days_of_month & 1) != 0)
		fail("days of month 0x%x", s->days_of_month);
	if (s->months == 0 || (s->months & 1) != 0 || (s->months >> 13) != 0)
		fail("months 0x%x", s->months);
	if (s->days_of_week == 0 || (s->days_of_week >> 7) != 0)
		fail("days of week 0x%x", s->days_of_week);
}

static bool
same_schedule(const SubexpireSchedule *a, const SubexpireSchedule *b)
{
	return a->interval_seconds == b->interval_seconds &&
		a->minutes == b->minutes && a->hours == b->hours &&
		a->days_of_month == b->days_of_month && a->months == b->months &&
		a->days_of_week == b->days_of_week &&
		a->day_of_month_restricted == b->day_of_month_restricted &&
		a->day_of_week_restricted == b->day_of_week_restricted;
}

/* Parse, checking what a refusal and an acceptance must look like. */
static bool
parse(const char *text, SubexpireSchedule *s)
{
	static char sentinel[] = "sentinel";
	char	   *error = sentinel;

	if (subexpire_parse_schedule(text, s, &error))
	{
		check_parsed(s);
		return true;
	}
	if (error == sentinel || error == NULL || error[0] == '\0')
		fail("refused without a message");
	return false;
}

/* The same schedule written another way must parse to the same. */
static void
check_variant(const char *variant, const char *how, bool ok,
			  const SubexpireSchedule *s)
{
	SubexpireSchedule other;
	bool		other_ok = parse(variant, &other);

	if (other_ok != ok)
		fail("%s, it is %s", how, other_ok ? "accepted" : "refused");
	if (ok && !same_schedule(s, &other))
		fail("%s, it parses to another schedule", how);
}

static void
check_parser_variants(const char *text, bool ok, const SubexpireSchedule *s)
{
	size_t		len = strlen(text);
	char	   *variant = palloc(len + 5);

	for (size_t i = 0; i <= len; i++)
		variant[i] = (text[i] >= 'a' && text[i] <= 'z') ? text[i] - 32 : text[i];

	check_variant(variant, "in upper case", ok, s);
	for (size_t i = 0; i <= len; i++)
		variant[i] = (text[i] >= 'A' && text[i] <= 'Z') ? text[i] + 32 : text[i];

	check_variant(variant, "in lower case", ok, s);
	snprintf(variant, len + 5, " \t%s\t ", text);
	check_variant(variant, "between blanks", ok, s);
	pfree(variant);
}

/* -------------------------------------------------- the reference parser */

/*
 * A second reading of the schedule forms, written from the rules in the
 * header of schedule.c and SUBEXPIRE_SCHEDULE_FORMS rather than from its
 * code: one scanner over the text instead of strtok, its own name table.
 * Any disagreement with subexpire_parse_schedule, on accepting or on what
 * it accepts, is a failure.
 */

typedef struct RefField
{
	int			min;
	int			max;
	const char *names;			/* three letters a name, from min on */
} RefField;

static const RefField ref_fields[5] = {
	{0, 59, NULL},				/* minute */
	{0, 23, NULL},				/* hour */
	{1, 31, NULL},				/* day of month */
	{1, 12, "janfebmaraprmayjunjulaugsepoctnovdec"},
	{0, 7, "sunmontuewedthufrisat"},	/* 7 is Sunday as well */
};

static const char *const ref_macros[][2] = {
	{"@yearly", "0 0 1 1 *"},
	{"@annually", "0 0 1 1 *"},
	{"@monthly", "0 0 1 * *"},
	{"@weekly", "0 0 * * 0"},
	{"@daily", "0 0 * * *"},
	{"@midnight", "0 0 * * *"},
	{"@hourly", "0 * * * *"},
};

/* Is text, in any case, the word (in lower case)? */
static bool
ref_is_word(const char *text, const char *word)
{
	for (; *word; text ++, word++)
		if (tolower((unsigned char) *text) != *word)
			return false;
	return *text == '\0';
}

/* A whole number at *p, saturating at a value beyond every bound. */
static bool
ref_number(const char **p, long *value)
{
	if (!isdigit((unsigned char) **p))
		return false;
	for (*value = 0; isdigit((unsigned char) **p); (*p)++)
		*value = Min(*value * 10 + (**p - '0'), 1000000);
	return true;
}

/* A value of field f at *p: a number in its bounds, or one of its names. */
static bool
ref_value(const char **p, const RefField *f, int *value)
{
	long		n;

	if (ref_number(p, &n))
	{
		*value = (int) n;
		return n >= f->min && n <= f->max;
	}
	for (int i = 0; f->names != NULL && f->names[i * 3] != '\0'; i++)
	{
		const char *name = f->names + i * 3;
		int			k;

		for (k = 0; k < 3; k++)
			if (tolower((unsigned char) (*p)[k]) != name[k])
				break;
		if (k == 3 && !isalpha((unsigned char) (*p)[3]))
		{
			*value = f->min + i;
			*p += 3;
			return true;
		}
	}
	return false;
}

/* A field: items ("*", "a" or "a-b", each maybe "/step") between commas. */
static bool
ref_field(const char *p, const RefField *f, uint64 *bits, bool *restricted)
{
	*bits = 0;
	*restricted = (*p != '*');
	for (;;)
	{
		int			first;
		int			last;
		long		step = 1;

		if (*p == '*')
		{
			first = f->min;
			last = f->max;
			p++;
		}
		else
		{
			if (!ref_value(&p, f, &first))
				return false;
			last = first;
			if (*p == '-')
			{
				p++;
				if (!ref_value(&p, f, &last) || last < first)
					return false;
			}
			else if (*p == '/')
				last = f->max;
		}
		if (*p == '/')
		{
			p++;
			if (!ref_number(&p, &step) || step < 1 ||
				step > f->max - f->min + 1)
				return false;
		}
		for (int v = first; v <= last; v += (int) step)
			*bits |= UINT64CONST(1) << v;
		if (*p == '\0')
			return true;
		if (*p++ != ',')
			return false;
	}
}

static bool
ref_parse(const char *text, SubexpireSchedule *out)
{
	size_t		len;
	char	   *s;
	char	   *fields[5];
	int			nfields = 0;
	uint64		bits[5];
	bool		restricted[5];
	char	   *p;

	memset(out, 0, sizeof(*out));
	while (isspace((unsigned char) *text))
		text	  ++;

	len = strlen(text);
	while (len > 0 && isspace((unsigned char) text[len - 1]))
		len--;
	if (len == 0)
		return false;
	s = palloc(len + 1);
	memcpy(s, text, len);
	s[len] = '\0';

	if (s[0] == '@')
	{
		for (int i = 0; i < lengthof(ref_macros); i++)
			if (ref_is_word(s, ref_macros[i][0]))
				return ref_parse(ref_macros[i][1], out);
		return false;
	}

	/* "N seconds": a number, blanks, the word; N from 1 to 59 */
	p = s;
	{
		long		n;

		if (ref_number((const char **) &p, &n) && isspace((unsigned char) *p))
		{
			while (isspace((unsigned char) *p))
				p++;
			if (ref_is_word(p, "seconds") || ref_is_word(p, "second"))
			{
				out->interval_seconds = (int) n;
				return n >= 1 && n <= 59;
			}
		}
	}

	/* Five fields between runs of spaces, tabs and line ends. */
	p = s;
	for (;;)
	{
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			*p++ = '\0';
		if (*p == '\0')
			break;
		if (nfields == 5)
			return false;
		fields[nfields++] = p;
		while (*p != '\0' && *p != ' ' && *p != '\t' && *p != '\r' &&
			   *p != '\n')
			p++;
	}
	if (nfields != 5)
		return false;
	for (int i = 0; i < 5; i++)
		if (!ref_field(fields[i], &ref_fields[i], &bits[i], &restricted[i]))
			return false;

	out->minutes = bits[0];
	out->hours = (uint32) bits[1];
	out->days_of_month = (uint32) bits[2];
	out->months = (uint16) bits[3];
	out->days_of_week = (uint8) ((bits[4] & 0x7F) | ((bits[4] >> 7) & 1));
	out->day_of_month_restricted = restricted[2];
	out->day_of_week_restricted = restricted[4];
	return true;
}

static void
check_against_reference(const char *text, bool ok, const SubexpireSchedule *s)
{
	SubexpireSchedule ref;
	bool		ref_ok = ref_parse(text, &ref);

	if (ok != ref_ok)
		fail("the parser %s it, the reference parser %s it",
			 ok ? "accepts" : "refuses", ref_ok ? "accepts" : "refuses");
	if (ok && !same_schedule(s, &ref))
		fail("the parser and the reference parser read it differently");
}

/* ------------------------------------------------------------ the oracle */

static bool
bit_set(uint64 bits, int i)
{
	return (bits & (UINT64CONST(1) << i)) != 0;
}

/* Do the day fields of the cron schedule match this date? */
static bool
oracle_date_matches(const SubexpireSchedule *s, int month, int day,
					int weekday)
{
	bool		dom = bit_set(s->days_of_month, day);
	bool		dow = bit_set(s->days_of_week, weekday);

	if (!bit_set(s->months, month))
		return false;
	/* Vixie cron: both restricted, either; otherwise both. */
	if (s->day_of_month_restricted && s->day_of_week_restricted)
		return dom || dow;
	return dom && dow;
}

/* Does the cron schedule match day "days" (since 2000-01-01)? */
static bool
oracle_day_matches(const SubexpireSchedule *s, int64 days)
{
	int64		year;
	int			month;
	int			day;

	model_civil_from_days(days + MODEL_EPOCH_DAYS, &year, &month, &day);
	return oracle_date_matches(s, month, day,
							   model_weekday(days + MODEL_EPOCH_DAYS));
}

static int
days_in_month(int64 year, int month)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool		leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);

	return days[month - 1] + (month == 2 && leap ? 1 : 0);
}

/* The wall-clock time (microseconds since 2000-01-01 local) of an instant. */
static int64
wall_clock(const pg_tz *tz, TimestampTz t)
{
	return t + (int64) model_offset_at(tz, model_floor_div(t, USECS_PER_SEC)) *
		USECS_PER_SEC;
}

/*
 * The first instant at which the wall clock of tz reads "wall" or later:
 * for a time the clocks pass once, that time; for one repeated by a jump
 * back, its first occurrence; for one skipped by a jump forward, the
 * instant of the jump.  Between changes the wall clock is the instant plus
 * a constant, so the answer is in the first stretch whose wall clock
 * reaches "wall"; no zone is 3 days from UTC, so it is within 3 days.
 */
static TimestampTz
first_instant_at_or_after(const pg_tz *tz, int64 wall)
{
	int64		wall_seconds = model_floor_div(wall, USECS_PER_SEC);
	ModelTransition changes[32];
	int			n = model_transitions(tz, wall_seconds - 3 * SECS_PER_DAY,
									  wall_seconds + 3 * SECS_PER_DAY,
									  changes, lengthof(changes));
	int64		start = PG_INT64_MIN;
	int			offset = model_offset_at(tz, wall_seconds - 3 * SECS_PER_DAY);

	for (int i = 0; i <= n; i++)
	{
		int64		end = i < n ? changes[i].at * USECS_PER_SEC : PG_INT64_MAX;
		int64		candidate = Max(start, wall - (int64) offset * USECS_PER_SEC);

		if (candidate < end)
			return candidate;
		start = end;
		offset = changes[i].offset_after;
	}
	fail("oracle: no instant for a wall-clock time");
	return 0;
}

/*
 * When the cron schedule fires first after "after", by brute force over
 * every minute of every day of a whole calendar cycle from the wall-clock
 * day of "after" (a time before that, or at that wall-clock time, was
 * first reached by "after").  *near_end: that time is in the last days of
 * the timestamp range, or beyond, where schedule.c may say "never".
 */
static TimestampTz
oracle_cron_next(const SubexpireSchedule *s, const pg_tz *tz,
				 TimestampTz after, bool *near_end)
{
	int64		wall_after = wall_clock(tz, after);
	int64		first_day = model_floor_div(wall_after, USECS_PER_DAY);
	int64		year;
	int			month;
	int			day;
	int			weekday = model_weekday(first_day + MODEL_EPOCH_DAYS);

	model_civil_from_days(first_day + MODEL_EPOCH_DAYS, &year, &month, &day);
	*near_end = false;
	for (int64 days = first_day; days <= first_day + CALENDAR_CYCLE_DAYS;
		 days++)
	{
		if (days * USECS_PER_DAY >= END_TIMESTAMP)
			break;
		for (int hour = 0; hour < 24; hour++)
		{
			if (!bit_set(s->hours, hour) ||
				!oracle_date_matches(s, month, day, weekday))
				continue;
			for (int minute = 0; minute < 60; minute++)
			{
				int64		wall = days * USECS_PER_DAY +
				(hour * 60 + minute) * USECS_PER_MINUTE;
				TimestampTz t;

				if (!bit_set(s->minutes, minute) || wall <= wall_after)
					continue;
				t = first_instant_at_or_after(tz, wall);
				if (t > after)
				{
					*near_end = t >= END_TIMESTAMP - END_MARGIN;
					return t;
				}
			}
		}

		/* the next day, on the calendar */
		weekday = (weekday + 1) % 7;
		if (++day > days_in_month(year, month))
		{
			day = 1;
			if (++month > 12)
			{
				month = 1;
				year++;
			}
		}
	}
	*near_end = true;
	return DT_NOEND;
}

/* Is "wall" (local, microseconds) a whole minute the cron fields match? */
static bool
cron_matches_wall(const SubexpireSchedule *s, int64 wall)
{
	int64		days = model_floor_div(wall, USECS_PER_DAY);
	int64		usecs = wall - days * USECS_PER_DAY;

	return usecs % USECS_PER_MINUTE == 0 &&
		oracle_day_matches(s, days) &&
		bit_set(s->hours, (int) (usecs / USECS_PER_HOUR)) &&
		bit_set(s->minutes, (int) (usecs / USECS_PER_MINUTE % MINS_PER_HOUR));
}

/*
 * Is t, on its own, a time the cron schedule fires at?  Either the wall
 * clock there matches and is its first occurrence, or t is a jump forward
 * over a wall-clock minute that matches.
 */
static void
check_cron_fires_at(const SubexpireSchedule *s, const pg_tz *tz,
					TimestampTz t)
{
	char		buf[128];
	int64		wall = wall_clock(tz, t);
	int			offset_before;
	int64		wall_before;

	if (cron_matches_wall(s, wall))
	{
		if (first_instant_at_or_after(tz, wall) != t)
			fail("fires at %s, a second occurrence of its wall-clock time",
				 format_time(t, buf, sizeof(buf)));
		return;
	}
	/* the wall clock just before t: t with the offset of the second before */
	offset_before = model_offset_at(tz, model_floor_div(t, USECS_PER_SEC) - 1);
	wall_before = t + (int64) offset_before * USECS_PER_SEC;
	if (t % USECS_PER_SEC == 0 && wall_before < wall)
	{
		/* a jump forward at t: the wall clock skips [wall_before, wall) */
		int64		minute = model_floor_div(wall_before + USECS_PER_MINUTE - 1,
											 USECS_PER_MINUTE) * USECS_PER_MINUTE;

		for (; minute < wall; minute += USECS_PER_MINUTE)
			if (cron_matches_wall(s, minute))
				return;
	}
	fail("fires at %s, whose wall clock does not match the schedule",
		 format_time(t, buf, sizeof(buf)));
}

/* --------------------------------------------------------- the next times */

static void
check_next_times(const SubexpireSchedule *s, pg_tz *tz, TimestampTz after)
{
	TimestampTz previous = after;
	char		previous_buf[128];
	char		got_buf[128];
	char		want_buf[128];

	/* From an infinite time, it never fires. */
	if (TIMESTAMP_NOT_FINITE(after))
	{
		TimestampTz got = subexpire_next_run(s, tz, after);

		if (got != DT_NOEND)
			fail("from an infinite time, it fires at %s",
				 format_time(got, got_buf, sizeof(got_buf)));
		return;
	}

	for (int i = 0; i < NEXT_COUNT; i++)
	{
		TimestampTz got = subexpire_next_run(s, tz, previous);
		TimestampTz want;
		bool		near_end;

		if (s->interval_seconds > 0)
		{
			int64		step = (int64) s->interval_seconds * USECS_PER_SEC;
			int64		unix_epoch = -(int64) MODEL_EPOCH_DAYS * USECS_PER_DAY;

			/* in 128 bits: "previous - unix_epoch" overflows near the end */
			int128		since = (int128) previous - unix_epoch;
			int128		periods = since / step - (since % step < 0 ? 1 : 0);
			int128		next = unix_epoch + (periods + 1) * step;

			near_end = next >= END_TIMESTAMP;
			want = near_end ? DT_NOEND : (TimestampTz) next;
			if (got != DT_NOEND && ((int128) got - unix_epoch) % step != 0)
				fail("fires at %s, not a multiple of %d seconds since 1970",
					 format_time(got, got_buf, sizeof(got_buf)),
					 s->interval_seconds);
		}
		else
			want = oracle_cron_next(s, tz, previous, &near_end);

		if (got == DT_NOEND)
		{
			if (!near_end)
				fail("next time %d after %s: \"never\", but it fires at %s",
					 i + 1, format_time(previous, previous_buf, sizeof(previous_buf)),
					 format_time(want, want_buf, sizeof(want_buf)));
			return;
		}
		if (got <= previous)
			fail("next time %d is %s, not after %s", i + 1,
				 format_time(got, got_buf, sizeof(got_buf)),
				 format_time(previous, previous_buf, sizeof(previous_buf)));
		if (!IS_VALID_TIMESTAMP(got))
			fail("next time %d is %s, outside the range of timestamptz",
				 i + 1, format_time(got, got_buf, sizeof(got_buf)));
		if (got != want)
			fail("next time %d after %s is %s; the oracle says %s", i + 1,
				 format_time(previous, previous_buf, sizeof(previous_buf)),
				 format_time(got, got_buf, sizeof(got_buf)),
				 format_time(want, want_buf, sizeof(want_buf)));
		if (s->interval_seconds == 0)
			check_cron_fires_at(s, tz, got);
		previous = got;
	}
}

/* ------------------------------------------------------------ the driver */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *input;
	char	   *newline;
	SubexpireSchedule schedule;
	bool		ok;
	TimestampTz after;
	pg_tz	   *tz = NULL;

	if (size > MAX_INPUT)
		return -1;				/* not worth adding to the corpus */

	/* A C string, as a setting is: it ends at the first NUL. */
	input = palloc(size + 1);
	memcpy(input, data, size);
	input[size] = '\0';
	newline = strchr(input, '\n');
	if (newline != NULL)
		*newline = '\0';

	/* Defaults, for an input of one line: just before a jump forward. */
	after = (model_days_from_civil(2026, 3, 8) - MODEL_EPOCH_DAYS) *
		USECS_PER_DAY + 6 * USECS_PER_HOUR;
	if (newline != NULL)
		read_after_line(newline + 1, &after, &tz);
	if (tz == NULL)
		tz = pg_tzset("Test/North");

	case_schedule = input;
	case_zone = model_zone_name(tz);
	case_after = after;

	ok = parse(input, &schedule);
	check_against_reference(input, ok, &schedule);
	check_parser_variants(input, ok, &schedule);
	if (ok)
		check_next_times(&schedule, tz, after);

	model_free_all();
	return 0;
}
