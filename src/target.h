/*-------------------------------------------------------------------------
 *
 * target.h
 *	  The target table, as the settings describe it, checked against the
 *	  catalog and opened with its owner's rights.
 *
 * IDENTIFICATION
 *	  src/target.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_TARGET_H
#define SUBEXPIRE_TARGET_H

#include "access/attnum.h"
#include "datatype/timestamp.h"

#include "owner.h"
#include "rules.h"

/* A rule sets at most this many columns besides its status (set_columns). */
#define SUBEXPIRE_MAX_SET_COLUMNS 64

/*
 * The words and bounds are Datums of the columns' own types, so that the
 * statements compare like with like and an index on the columns serves
 * them.
 */
typedef struct SubexpireTarget
{
	const SubexpireRule *rule;	/* what it was opened for */
	Oid			relid;
	AttrNumber	status_attnum;
	AttrNumber	expires_attnum;
	AttrNumber	updated_attnum; /* InvalidAttrNumber when none */
	char	   *qualified_name; /* quoted, ready to paste into SQL */
	char	   *status_column;	/* quoted */
	char	   *expires_column; /* quoted */
	char	   *updated_column; /* quoted, or NULL when none is configured */
	Oid			status_type;
	Oid			expires_type;
	Oid			updated_type;
	Datum		active_word;
	Datum		expired_word;
	/* set_columns, converted: */
	int			nset;
	AttrNumber *set_attnums;
	char	  **set_names;		/* quoted */
	Oid		   *set_types;
	Datum	   *set_values;
	bool	   *set_nulls;
	char	   *key_columns;	/* see subexpire_key_columns() */
	int			nkeys;			/* the primary key's columns: */
	char	  **key_names;		/* as in the catalog, not quoted */
	Oid		   *key_types;
	Oid			owner;			/* the statements run as this role */
	bool		count_outcome;	/* BEFORE ROW triggers may change what is
								 * written: count rows by their new status */
	/* A Citus hash-distributed table (src/distributed.c): */
	bool		distributed;
	AttrNumber	key_attnum;		/* its distribution column */
	char	   *key_column;		/* quoted */
	Oid			key_type;
	bool		remote_lock_wait;	/* the shards' lock_timeout was set */
	char	   *caller_lock_timeout;	/* to give back to the shards */
	/* What subexpire_close_target() restores. */
	SubexpireSavedUser caller;
	int			guc_level;
} SubexpireTarget;

/* What the caller of subexpire_open_target() does with the target. */
typedef enum SubexpireAccess
{
	SUBEXPIRE_FOR_RUN,			/* expires rows: needs SELECT and UPDATE */
	SUBEXPIRE_FOR_COUNT,		/* counts due rows (a dry run): needs SELECT */
	SUBEXPIRE_FOR_MONITOR,		/* monitoring: needs no access to the rows */
	SUBEXPIRE_FOR_CHECK			/* a rule being written: its writer, and the
								 * worker's role, need the rights of a run */
} SubexpireAccess;

extern SubexpireTarget *subexpire_open_target(const SubexpireRule *rule,
											  SubexpireAccess access);
extern void subexpire_close_target(SubexpireTarget *target);
extern void subexpire_set_lock_wait(SubexpireTarget *target, int timeout_ms);
extern int	subexpire_bound_lock_waits(void);
extern char *subexpire_relation_name(Oid relid);
extern const char *subexpire_key_columns(SubexpireTarget *target);
extern Datum subexpire_timestamp_for_column(TimestampTz ts, Oid column_type,
											const char *what,
											const char *column);

#endif							/* SUBEXPIRE_TARGET_H */
