/*-------------------------------------------------------------------------
 *
 * srf.c
 *	  The result set of a set-returning C function, in materialize mode.
 *
 * Every set-returning function of the extension fills a tuplestore and
 * hands it to the executor at once, as pg_stat_statements does; this is
 * the one copy of that set-up.  (PostgreSQL 15's InitMaterializedSRF()
 * does the same for composite results, but not before 15.)
 *
 * IDENTIFICATION
 *	  src/srf.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/tupdesc.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/lsyscache.h"

#include "srf.h"

/*
 * Check that the caller can take a materialized set, and give it an empty
 * tuplestore that the function fills: returned, with the descriptor of its
 * rows in *tupdesc (the function's row type, or one column of its scalar
 * result type).  Both live in the query's memory.
 */
Tuplestorestate *
subexpire_result_set(FunctionCallInfo fcinfo, TupleDesc *tupdesc)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext caller_context;
	Tuplestorestate *tupstore;
	Oid			result_type;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		(rsinfo->allowedModes & SFRM_Materialize) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s() must be called where a set can be returned",
						get_func_name(fcinfo->flinfo->fn_oid))));

	caller_context = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	switch (get_call_result_type(fcinfo, &result_type, tupdesc))
	{
		case TYPEFUNC_COMPOSITE:
			break;
		case TYPEFUNC_SCALAR:
			*tupdesc = CreateTemplateTupleDesc(1);
			TupleDescInitEntry(*tupdesc, (AttrNumber) 1,
							   get_func_name(fcinfo->flinfo->fn_oid),
							   result_type, -1, 0);
			break;
		default:
			elog(ERROR, "return type must be a row type or a scalar");
	}
	tupstore = tuplestore_begin_heap(false, false, work_mem);
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = tupstore;
	rsinfo->setDesc = *tupdesc;
	MemoryContextSwitchTo(caller_context);
	return tupstore;
}
