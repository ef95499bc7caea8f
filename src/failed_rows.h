/*-------------------------------------------------------------------------
 *
 * failed_rows.h
 *	  Due rows whose update failed: which errors are about a row, the
 *	  rows a run left as they were, and their records.
 *
 * IDENTIFICATION
 *	  src/failed_rows.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_FAILED_ROWS_H
#define SUBEXPIRE_FAILED_ROWS_H

#include "storage/itemptr.h"

#include "target.h"

/* The rows of one rule of a run whose update failed (see failed_rows.c). */
typedef struct SubexpireFailedRows SubexpireFailedRows;

extern bool subexpire_is_row_error(int sqlerrcode);
extern SubexpireFailedRows *subexpire_failed_rows_create(MemoryContext context);
extern int64 subexpire_failed_rows_count(const SubexpireFailedRows *failed);
extern const char *subexpire_failed_rows_first_error(const SubexpireFailedRows *failed);
extern bool subexpire_failed_row_known(const SubexpireFailedRows *failed,
									   Oid relid, ItemPointer tid);
extern int64 subexpire_record_failed_rows(SubexpireFailedRows *failed,
										  SubexpireTarget *target,
										  int64 run_id, Oid relid,
										  ItemPointer tid,
										  const char *from_where, int nargs,
										  Oid *types, Datum *values,
										  const char *nulls,
										  const char *error);

#endif							/* SUBEXPIRE_FAILED_ROWS_H */
