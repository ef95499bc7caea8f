-- Run by `make sanitize-check` only (scripts/sanitize-check.sh), first:
-- proves that this server runs the sanitized build of the library, the one
-- in the first directory of dynamic_library_path, with the sanitizer
-- runtimes, and no other build of it.
LOAD 'subexpire';
SELECT split_part(current_setting('dynamic_library_path'), ':', 1)
       || '/subexpire.so' AS sanitized_build \gset
WITH mapped AS (
    SELECT DISTINCT substring(line FROM ' (/.*)$') AS path
    FROM regexp_split_to_table(pg_read_file('/proc/self/maps'), E'\n') AS line
)
SELECT bool_or(path = :'sanitized_build') AS sanitized_build_loaded,
       NOT bool_or(path LIKE '%/subexpire.so' AND path <> :'sanitized_build')
           AS no_other_build,
       bool_or(path LIKE '%/libasan.so%') AS asan_runtime,
       bool_or(path LIKE '%/libubsan.so%') AS ubsan_runtime
FROM mapped;
