/*-------------------------------------------------------------------------
 *
 * preload.c
 *	  What `make sanitize-check` preloads between the AddressSanitizer and
 *	  the UndefinedBehaviorSanitizer runtimes, so that they work in
 *	  PostgreSQL's programs, which are not built with them.
 *
 * swift_demangle(): a preloaded libasan initialises at the first call it
 * intercepts.  In postgres, psql and initdb that call is the malloc() inside
 * newlocale() in libp11-kit's constructor (linked in through LDAP and
 * GnuTLS), made while glibc holds its locale lock for writing.  The
 * runtime's initialisation then looks up swift_demangle with dlsym(), which
 * fails, and calls dlerror(), which translates its message and so takes the
 * same lock for reading.  Unlocking that, glibc releases the writer's lock
 * instead; the lock is left corrupt and the program hangs at its next
 * setlocale(), bindtextdomain() or freelocale() (gcc 12's libasan and
 * clang 14's on glibc 2.36: `postgres -V` never returns).  With the symbol
 * defined the lookup succeeds and dlerror() has nothing to translate.  The
 * runtime calls it only for names mangled by Swift, which nothing here has;
 * NULL means "not demangled".
 *
 * __ubsan_default_options(): the standalone UBSan runtime reads its
 * options when it first reports, and reads them from /proc/self/environ.
 * By then a server process has written its process title over that memory
 * (PostgreSQL's set_ps_display), so UBSAN_OPTIONS would be lost: no stack
 * trace, and exit status 1 instead of SIGABRT.  getenv() still works,
 * because PostgreSQL moved the environment before overwriting it; the
 * runtime calls this function through the PLT, so the definition preloaded
 * before libubsan is the one it gets.
 *
 * IDENTIFICATION
 *	  test/sanitize/preload.c
 *
 *-------------------------------------------------------------------------
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

char	   *swift_demangle(const char *mangled, size_t mangled_length,
						   char *output, size_t *output_length,
						   uint32_t flags);
const char *__ubsan_default_options(void);

char *
swift_demangle(const char *mangled, size_t mangled_length,
			   char *output, size_t *output_length, uint32_t flags)
{
	return NULL;
}

const char *
__ubsan_default_options(void)
{
	const char *options = getenv("UBSAN_OPTIONS");

	return options != NULL ? options : "";
}
