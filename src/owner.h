/*-------------------------------------------------------------------------
 *
 * owner.h
 *	  Act with the rights of a relation's owner, and back.
 *
 * IDENTIFICATION
 *	  src/owner.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_OWNER_H
#define SUBEXPIRE_OWNER_H

/* The caller's user and security context, to give back. */
typedef struct SubexpireSavedUser
{
	Oid			userid;
	int			sec_context;
} SubexpireSavedUser;

extern Oid	subexpire_relation_owner(Oid relid);
extern void subexpire_act_as_owner(Oid owner, SubexpireSavedUser *saved);
extern void subexpire_act_as_caller(const SubexpireSavedUser *saved);

#endif							/* SUBEXPIRE_OWNER_H */
