/*-------------------------------------------------------------------------
 *
 * rule_check.h
 *	  The check of a row of subexpire_rules when it is written.
 *
 * IDENTIFICATION
 *	  src/rule_check.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_RULE_CHECK_H
#define SUBEXPIRE_RULE_CHECK_H

#include "fmgr.h"

extern Datum subexpire_rules_check(PG_FUNCTION_ARGS);

#endif							/* SUBEXPIRE_RULE_CHECK_H */
