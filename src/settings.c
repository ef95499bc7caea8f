/*-------------------------------------------------------------------------
 *
 * settings.c
 *	  The settings of the subexpire extension.
 *
 * Every setting is defined here with a check hook, so that a value that
 * cannot work (a table name that is not one, an empty status word) is
 * refused when it is set, naming the setting and the accepted form, rather
 * than failing later inside a run.  What can only be checked against the
 * catalog (does the table exist, what type is the column) is checked when
 * a run starts, by src/target.c.
 *
 * IDENTIFICATION
 *	  src/settings.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "parser/scansup.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "schedule.h"
#include "settings.h"

#if PG_VERSION_NUM < 150000
#define MarkGUCPrefixReserved(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

char	   *subexpire_target_table = NULL;
char	   *subexpire_status_column = NULL;
char	   *subexpire_expires_column = NULL;
char	   *subexpire_updated_column = NULL;
char	   *subexpire_active_status = NULL;
char	   *subexpire_expired_status = NULL;
int			subexpire_grace_period = 0;
int			subexpire_batch_size = 1000;
int			subexpire_max_expired_per_run = 0;
int			subexpire_lock_wait = 1000;
int			subexpire_max_run_duration = 0;
bool		subexpire_enabled = true;
char	   *subexpire_schedule = NULL;
char	   *subexpire_timezone = NULL;
char	   *subexpire_database = NULL;
char	   *subexpire_role = NULL;
bool		subexpire_catch_up = true;
int			subexpire_history_retention = 90 * 24 * 60 * 60;
int			subexpire_alert_no_expiry_after = 7 * 24 * 60 * 60;
int			subexpire_alert_max_expired = 0;
int			subexpire_alert_event_backlog_after = 60 * 60;
bool		subexpire_log_expired = false;

/*
 * How many dot-separated SQL identifiers "value" is made of, or -1 when it
 * does not parse as such.  Quoting follows SQL: "Odd Name" keeps its case
 * and spaces, an unquoted name is folded to lower case.  Anything else (a
 * semicolon, a second word, an unbalanced quote) does not parse, so that a
 * setting shaped like SQL never reaches a statement.
 */
static int
identifier_count(const char *value)
{
	char	   *copy = pstrdup(value);
	List	   *parts = NIL;
	int			count = -1;

	if (SplitIdentifierString(copy, '.', &parts))
		count = list_length(parts);
	list_free(parts);
	pfree(copy);
	return count;
}

static bool
check_table_name(char **newval, void **extra, GucSource source)
{
	if (*newval != NULL && identifier_count(*newval) == 2)
		return true;
	GUC_check_errdetail("The value must be a schema-qualified table name, such as public.subscriptions.");
	GUC_check_errhint("Quote a name that has capitals, spaces or dots in it with double quotes, as in SQL: 'billing.\"Subscriptions\"'.");
	return false;
}

static bool
check_column_name(char **newval, void **extra, GucSource source)
{
	if (*newval != NULL && identifier_count(*newval) == 1)
		return true;
	GUC_check_errdetail("The value must be one column name, such as status.");
	GUC_check_errhint("Quote a name that has capitals or spaces in it with double quotes, as in SQL.");
	return false;
}

/* As check_column_name, but empty means "no such column". */
static bool
check_optional_column_name(char **newval, void **extra, GucSource source)
{
	if (*newval != NULL && (*newval)[0] == '\0')
		return true;
	return check_column_name(newval, extra, source);
}

static bool
check_status_word(char **newval, void **extra, GucSource source)
{
	if (*newval != NULL && (*newval)[0] != '\0')
		return true;
	GUC_check_errdetail("A status word must not be empty.");
	return false;
}

static bool
check_schedule(char **newval, void **extra, GucSource source)
{
	SubexpireSchedule schedule;
	char	   *error;

	if (*newval != NULL && subexpire_parse_schedule(*newval, &schedule, &error))
		return true;
	GUC_check_errdetail("%s.", *newval == NULL ? "no schedule" : error);
	GUC_check_errhint("%s", SUBEXPIRE_SCHEDULE_FORMS);
	return false;
}

static bool
check_timezone(char **newval, void **extra, GucSource source)
{
	if (*newval != NULL && subexpire_lookup_zone(*newval) != NULL)
		return true;
	GUC_check_errdetail("There is no time zone called \"%s\" in the time zone database.",
						*newval == NULL ? "" : *newval);
	GUC_check_errhint("%s", SUBEXPIRE_ZONE_FORMS);
	return false;
}

/*
 * The databases of subexpire.database, parsed by its check hook and set by
 * its assign hook, so that the scheduler reads a list that was checked.
 */
typedef struct DatabaseList
{
	int			count;
	char		names[SUBEXPIRE_MAX_DATABASES][NAMEDATALEN];
} DatabaseList;

static const DatabaseList *databases = NULL;

#define DATABASE_LIST_HINT "List the databases separated by commas, each as pg_database spells it, such as 'shop, billing'; put a name that has a comma, a double quote (doubled) or spaces at its ends in double quotes."

/*
 * Take the next name of a database list from *p into name, as written:
 * a name in double quotes keeps everything in them (a doubled quote is
 * one), another is trimmed of spaces at its ends; case is kept either way,
 * since pg_database names are compared as written.  False, with the
 * problem in GUC_check_errdetail, when the element cannot be a name.
 */
static bool
next_database_name(const char **p, char *name)
{
	const char *s = *p;
	int			len = 0;

	while (scanner_isspace(*s))
		s++;
	if (*s == '"')
	{
		for (s++;; s++)
		{
			if (*s == '\0')
			{
				GUC_check_errdetail("A double quote is not closed.");
				return false;
			}
			if (*s == '"' && s[1] != '"')
				break;
			if (*s == '"')
				s++;
			if (len == NAMEDATALEN - 1)
			{
				GUC_check_errdetail("A database name is longer than %d bytes.",
									NAMEDATALEN - 1);
				return false;
			}
			name[len++] = *s;
		}
		s++;
		while (scanner_isspace(*s))
			s++;
		if (*s != ',' && *s != '\0')
		{
			GUC_check_errdetail("A quoted name is followed by something other than a comma.");
			return false;
		}
	}
	else
	{
		const char *end = s;

		while (*end != ',' && *end != '\0')
		{
			if (*end == '"')
			{
				GUC_check_errdetail("A double quote may only surround a whole name.");
				return false;
			}
			end++;
		}
		len = end - s;
		while (len > 0 && scanner_isspace(s[len - 1]))
			len--;
		if (len > NAMEDATALEN - 1)
		{
			GUC_check_errdetail("A database name is longer than %d bytes.",
								NAMEDATALEN - 1);
			return false;
		}
		memcpy(name, s, len);
		s = end;
	}
	name[len] = '\0';
	if (len == 0)
	{
		GUC_check_errdetail("The list has an empty database name.");
		return false;
	}
	*p = s;
	return true;
}

static bool
check_database(char **newval, void **extra, GucSource source)
{
	DatabaseList list;
	const char *p = *newval;
	DatabaseList *copy;

	memset(&list, 0, sizeof(list));
	if (p == NULL)
		p = "";
	for (;;)
	{
		if (list.count == SUBEXPIRE_MAX_DATABASES)
		{
			GUC_check_errdetail("The list names more than %d databases.",
								SUBEXPIRE_MAX_DATABASES);
			return false;
		}
		if (!next_database_name(&p, list.names[list.count]))
		{
			GUC_check_errhint(DATABASE_LIST_HINT);
			return false;
		}
		for (int i = 0; i < list.count; i++)
			if (strcmp(list.names[i], list.names[list.count]) == 0)
			{
				GUC_check_errdetail("Database \"%s\" is listed twice.",
									list.names[i]);
				GUC_check_errhint(DATABASE_LIST_HINT);
				return false;
			}
		list.count++;
		if (*p == '\0')
			break;
		p++;					/* the comma */
	}
#if PG_VERSION_NUM >= 160000
	copy = guc_malloc(LOG, sizeof(DatabaseList));
#else
	copy = malloc(sizeof(DatabaseList));
#endif
	if (copy == NULL)
		return false;
	*copy = list;
	*extra = copy;
	return true;
}

static void
assign_database(const char *newval, void *extra)
{
	databases = extra;
}

/* How many databases subexpire.database lists (1 or more). */
int
subexpire_database_count(void)
{
	return databases ? databases->count : 0;
}

/* Does subexpire.database list the database "name"? */
bool
subexpire_database_listed(const char *name)
{
	for (int i = 0; i < subexpire_database_count(); i++)
		if (strcmp(subexpire_database_name(i), name) == 0)
			return true;
	return false;
}

/* The i-th database that subexpire.database lists, from 0. */
const char *
subexpire_database_name(int i)
{
	Assert(databases != NULL && i >= 0 && i < databases->count);
	return databases->names[i];
}

/* Called from _PG_init. */
void
subexpire_define_settings(void)
{
	DefineCustomStringVariable("subexpire.target_table",
							   "Table whose due subscriptions are expired.",
							   "A schema-qualified table name, such as public.subscriptions; plain or partitioned.",
							   &subexpire_target_table,
							   "public.subscriptions",
							   PGC_SUSET, 0,
							   check_table_name, NULL, NULL);

	DefineCustomStringVariable("subexpire.status_column",
							   "Column holding the subscription's status.",
							   "Its type may be text, varchar, char, an enum or a domain over one of them.",
							   &subexpire_status_column,
							   "status",
							   PGC_SUSET, 0,
							   check_column_name, NULL, NULL);

	DefineCustomStringVariable("subexpire.expires_column",
							   "Column holding the time the subscription expires.",
							   "Its type may be timestamptz, timestamp or date; NULL never expires.",
							   &subexpire_expires_column,
							   "expires_at",
							   PGC_SUSET, 0,
							   check_column_name, NULL, NULL);

	DefineCustomStringVariable("subexpire.updated_column",
							   "Column set to the time of the run on each expired row.",
							   "Empty: no column is set.",
							   &subexpire_updated_column,
							   "updated_at",
							   PGC_SUSET, 0,
							   check_optional_column_name, NULL, NULL);

	DefineCustomStringVariable("subexpire.active_status",
							   "Status word of a subscription that is active.",
							   NULL,
							   &subexpire_active_status,
							   "active",
							   PGC_SUSET, 0,
							   check_status_word, NULL, NULL);

	DefineCustomStringVariable("subexpire.expired_status",
							   "Status word given to a subscription when it expires.",
							   NULL,
							   &subexpire_expired_status,
							   "expired",
							   PGC_SUSET, 0,
							   check_status_word, NULL, NULL);

	DefineCustomIntVariable("subexpire.grace_period",
							"Time after its expiry at which a subscription becomes due.",
							"A row is due when its expiry plus this period is at or before the cutoff.",
							&subexpire_grace_period,
							0, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("subexpire.batch_size",
							"Rows expired per transaction when the background worker runs.",
							NULL,
							&subexpire_batch_size,
							1000, 1, INT_MAX,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("subexpire.max_expired_per_run",
							"A run that would expire more rows than this refuses and changes nothing.",
							"0 means no limit.  A guard against a wrong clock or bad data.",
							&subexpire_max_expired_per_run,
							0, 0, INT_MAX,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("subexpire.lock_wait",
							"How long a run waits, in all, for due rows that other transactions hold locked, and at most for any other lock.",
							"Rows still locked after this are left for the next run and counted in the run's record; a run that waits longer for another lock (on the table, say) fails.",
							&subexpire_lock_wait,
							1000, 1, 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("subexpire.max_run_duration",
							"A worker run starts no new batch after it has run this long.",
							"It records that it stopped early, and the next run expires the rest.  0: no limit.  A manual run is bounded by statement_timeout.",
							&subexpire_max_run_duration,
							0, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("subexpire.enabled",
							 "Whether the background worker runs the job on its schedule.",
							 NULL,
							 &subexpire_enabled,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("subexpire.schedule",
							   "When the background worker runs the job.",
							   SUBEXPIRE_SCHEDULE_FORMS,
							   &subexpire_schedule,
							   "0 2 * * *",
							   PGC_SIGHUP, 0,
							   check_schedule, NULL, NULL);

	DefineCustomStringVariable("subexpire.timezone",
							   "Time zone in which the schedule's cron fields are read.",
							   NULL,
							   &subexpire_timezone,
							   "UTC",
							   PGC_SIGHUP, 0,
							   check_timezone, NULL, NULL);

	DefineCustomStringVariable("subexpire.database",
							   "Databases the background worker runs the job in, one after another.",
							   "A comma-separated list, such as 'shop, billing'; a name with a comma, a double quote or spaces at its ends in double quotes.",
							   &subexpire_database,
							   "postgres",
							   PGC_SIGHUP, 0,
							   check_database, assign_database, NULL);

	DefineCustomStringVariable("subexpire.role",
							   "Role the background worker runs the job as.",
							   "Empty: the bootstrap superuser.",
							   &subexpire_role,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("subexpire.catch_up",
							 "Run once at start-up if a scheduled time passed while nothing ran.",
							 NULL,
							 &subexpire_catch_up,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("subexpire.history_retention",
							"Runs older than this are removed from subexpire_runs.",
							"0 keeps them all.",
							&subexpire_history_retention,
							90 * 24 * 60 * 60, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("subexpire.alert_no_expiry_after",
							"subexpire_health() warns when no subscription expired for this long.",
							"0 turns the check off.",
							&subexpire_alert_no_expiry_after,
							7 * 24 * 60 * 60, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("subexpire.alert_max_expired",
							"subexpire_health() warns when a run expired more subscriptions than this.",
							"0 turns the check off.",
							&subexpire_alert_max_expired,
							0, 0, INT_MAX,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("subexpire.alert_event_backlog_after",
							"subexpire_health() warns when the oldest event not taken from subexpire_events is older than this.",
							"0 turns the check off.",
							&subexpire_alert_event_backlog_after,
							60 * 60, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("subexpire.log_expired",
							 "Log one line per expired subscription, naming its key.",
							 NULL,
							 &subexpire_log_expired,
							 false,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	MarkGUCPrefixReserved("subexpire");
}
