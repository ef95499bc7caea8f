/*-------------------------------------------------------------------------
 *
 * owner.c
 *	  Act with the rights of a relation's owner, and back.
 *
 * Code that a table's owner can put on the table (triggers, domain checks,
 * type input functions, index expressions, policies) must never run with
 * more rights than the owner has, whoever calls subexpire, a superuser's
 * worker included.  So every statement on the target table, and on the
 * extension's own run history, runs as that relation's owner in a
 * security-restricted operation, as VACUUM, ANALYZE and PostgreSQL's
 * foreign-key triggers do: the owner's code can neither change the
 * session's settings for the caller nor leave anything behind that runs
 * later with the caller's rights.  This is the one place that switches.
 *
 * IDENTIFICATION
 *	  src/owner.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_class.h"
#include "miscadmin.h"
#include "utils/syscache.h"

#include "owner.h"

/* The owner of a relation. */
Oid
subexpire_relation_owner(Oid relid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * Become "owner", in a security-restricted operation, saving the caller's
 * user in *saved.  subexpire_act_as_caller() gives it back; an error does
 * so by itself, when the (sub)transaction aborts.
 */
void
subexpire_act_as_owner(Oid owner, SubexpireSavedUser *saved)
{
	GetUserIdAndSecContext(&saved->userid, &saved->sec_context);
	SetUserIdAndSecContext(owner,
						   saved->sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

void
subexpire_act_as_caller(const SubexpireSavedUser *saved)
{
	SetUserIdAndSecContext(saved->userid, saved->sec_context);
}
