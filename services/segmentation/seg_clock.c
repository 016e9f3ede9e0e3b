/* seg_clock: wall clock plus a test offset read from a file (seg_clock.h).
 * The file is tiny and read at most every SEG_CLOCK_REREAD_MS, and only
 * when the test facility is switched on, so the read stays synchronous. */
#include "seg_clock.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdp_log.h"
#include "cdp_service.h"

enum { SEG_CLOCK_FILE_MAX = 64 };

int seg_clock_init(seg_clock *c, const char *path)
{
    memset(c, 0, sizeof(*c));
    if (path && *path && !(c->path = strdup(path)))
        return -1;
    return 0;
}

void seg_clock_free(seg_clock *c)
{
    free(c->path);
    c->path = NULL;
}

int seg_clock_parse(const char *s, size_t len, int64_t *out)
{
    size_t i = 0, end = len;
    while (i < end && isspace((unsigned char)s[i]))
        i++;
    while (end > i && isspace((unsigned char)s[end - 1]))
        end--;
    if (i == end) {
        *out = 0;
        return 0;
    }
    char buf[SEG_CLOCK_FILE_MAX];
    if (end - i >= sizeof(buf))
        return -1;
    memcpy(buf, s + i, end - i);
    buf[end - i] = '\0';
    char *stop;
    errno = 0;
    long long v = strtoll(buf, &stop, 10);
    if (errno || *stop || stop == buf)
        return -1;
    *out = v;
    return 0;
}

static void seg__clock_reread(seg_clock *c)
{
    FILE *f = fopen(c->path, "r");
    if (!f) {
        c->offset_ms = 0;
        return;
    }
    char buf[SEG_CLOCK_FILE_MAX];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    int64_t v;
    if (n == sizeof(buf) || seg_clock_parse(buf, n, &v) != 0) {
        cdp_log(CDP_LOG_WARN, "malformed clock offset file; keeping the last offset",
                "{s:s,s:I}", "file", c->path, "offset_ms", (long long)c->offset_ms);
        return;
    }
    c->offset_ms = v;
}

int64_t seg_clock_now(seg_clock *c)
{
    if (c->path) {
        uint64_t mono = cdp_mono_ms();
        if (!c->have_read || mono - c->read_mono_ms >= SEG_CLOCK_REREAD_MS) {
            c->have_read = 1;
            c->read_mono_ms = mono;
            seg__clock_reread(c);
        }
    }
    return cdp_now_ms() + c->offset_ms;
}
