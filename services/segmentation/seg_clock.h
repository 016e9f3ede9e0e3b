/* seg_clock: the one source of "now" for segmentation (evaluation, the
 * scheduler, backfill, change timestamps).
 *
 * Wall clock plus an offset in milliseconds. The offset is a TEST FACILITY:
 * when CDP_CLOCK_OFFSET_FILE names a file, its content (a decimal integer,
 * may be negative) is the offset; the file is re-read at most every
 * SEG_CLOCK_REREAD_MS; a missing or empty file means 0; a malformed one logs
 * a warning and keeps the last value. Tests use it to move the service
 * 31 days ahead without waiting. */
#ifndef SEG_CLOCK_H
#define SEG_CLOCK_H

#include <stddef.h>
#include <stdint.h>

enum { SEG_CLOCK_REREAD_MS = 100 };

typedef struct {
    char *path;            /* NULL: no offset */
    int64_t offset_ms;
    uint64_t read_mono_ms; /* when the file was last read (monotonic) */
    int have_read;
} seg_clock;

/* path may be NULL or "" (no offset). Returns 0 or -1 (out of memory). */
int seg_clock_init(seg_clock *c, const char *path);
void seg_clock_free(seg_clock *c);

/* Milliseconds since the epoch, offset applied. */
int64_t seg_clock_now(seg_clock *c);

/* Parses an offset file's content (len bytes). Blank content is 0.
 * Returns 0 and *out, or -1 when it is not one decimal integer. Pure. */
int seg_clock_parse(const char *s, size_t len, int64_t *out);

#endif
