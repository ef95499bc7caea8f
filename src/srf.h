/*-------------------------------------------------------------------------
 *
 * srf.h
 *	  The result set of a set-returning C function, in materialize mode.
 *
 * IDENTIFICATION
 *	  src/srf.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_SRF_H
#define SUBEXPIRE_SRF_H

#include "fmgr.h"
#include "utils/tuplestore.h"

extern Tuplestorestate *subexpire_result_set(FunctionCallInfo fcinfo,
											 TupleDesc *tupdesc);

#endif							/* SUBEXPIRE_SRF_H */
