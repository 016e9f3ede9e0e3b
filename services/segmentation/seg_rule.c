/* seg_rule: building and printing parsed rules (see seg_rule.h and
 * seg_rule_int.h): the node/literal/string tables, the finishing pass that
 * derives timed flags and dependencies, canonical text, and the validation
 * shared by the text parser and the stored-form loader (strings, timestamps,
 * durations, operator names). */
#include "seg_rule_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- tables */

uint64_t seg__hash(const char *s, size_t len)
{
    /* FNV-1a: names are short, and the profile side hashes the same way. */
    uint64_t h = UINT64_C(14695981039346656037);
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= UINT64_C(1099511628211);
    }
    return h;
}

seg_rule *seg__rule_new(void)
{
    return calloc(1, sizeof(seg_rule));
}

/* Makes room for one more element in a table of `size`-byte elements. */
static int grow(void **v, int n, int *cap, size_t size)
{
    if (n < *cap)
        return 0;
    int ncap = *cap ? *cap * 2 : 8;
    void *nv = realloc(*v, (size_t)ncap * size);
    if (!nv)
        return -1;
    *v = nv;
    *cap = ncap;
    return 0;
}

int seg__node_insert(seg_rule *r, int at)
{
    if (r->nnodes >= SEG_RULE_MAX_NODES ||
        grow((void **)&r->nodes, r->nnodes, &r->capnodes, sizeof(seg__node)) < 0)
        return -1;
    memmove(&r->nodes[at + 1], &r->nodes[at], (size_t)(r->nnodes - at) * sizeof(seg__node));
    r->nnodes++;
    seg__node *n = &r->nodes[at];
    memset(n, 0, sizeof(*n));
    n->name = n->lit = -1;
    n->size = 1;
    return at;
}

int seg__node_add(seg_rule *r)
{
    return seg__node_insert(r, r->nnodes);
}

int seg__intern(seg_rule *r, const char *s, size_t len)
{
    uint64_t h = seg__hash(s, len);
    for (int i = 0; i < r->nstrs; i++)
        if (r->strs[i].hash == h && r->strs[i].len == len && memcmp(r->strs[i].s, s, len) == 0)
            return i;
    if (grow((void **)&r->strs, r->nstrs, &r->capstrs, sizeof(seg__str)) < 0)
        return -1;
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    memcpy(copy, s, len);
    copy[len] = '\0';
    r->strs[r->nstrs] = (seg__str){copy, len, h};
    return r->nstrs++;
}

int seg__lit_add(seg_rule *r, const seg__lit *l)
{
    if (r->nlits >= SEG__MAX_LITS ||
        grow((void **)&r->lits, r->nlits, &r->caplits, sizeof(seg__lit)) < 0)
        return -1;
    r->lits[r->nlits] = *l;
    return r->nlits++;
}

void seg_rule_free(seg_rule *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->nstrs; i++)
        free(r->strs[i].s);
    free(r->strs);
    free(r->nodes);
    free(r->lits);
    free(r->deps);
    free(r);
}

/* ------------------------------------------------------- finishing pass */

/* The dependency a leaf reads (name NULL when it has none). */
static seg_dep leaf_dep(const seg_rule *r, const seg__node *n)
{
    const char *name = n->name >= 0 ? r->strs[n->name].s : NULL;
    if (n->kind == SEG__K_TRAIT)
        return (seg_dep){SEG_DEP_TRAIT, name};
    if (n->kind == SEG__K_METRIC) {
        if (n->src == SEG__M_COUNT)
            return (seg_dep){SEG_DEP_EVENT, name};
        return (seg_dep){n->src == SEG__M_REVENUE ? SEG_DEP_REVENUE : SEG_DEP_TOTAL_EVENTS, NULL};
    }
    if (n->src == SEG__T_CHANNEL)
        return (seg_dep){SEG_DEP_CHANNEL, name};
    return (seg_dep){n->src == SEG__T_FIRST_SEEN ? SEG_DEP_FIRST_SEEN : SEG_DEP_LAST_SEEN, NULL};
}

static int leaf_timed(const seg__node *n)
{
    if (n->kind == SEG__K_METRIC)
        return n->days > 0;
    if (n->kind == SEG__K_TIME)
        return n->op == SEG__OP_WITHIN || n->op == SEG__OP_BEFORE;
    return 0;
}

int seg__rule_finish(seg_rule *r)
{
    /* Children follow their parent, so a backward pass sees every child's
     * timed flag before the parent's. */
    for (int i = r->nnodes - 1; i >= 0; i--) {
        seg__node *n = &r->nodes[i];
        if (n->kind == SEG__K_AND || n->kind == SEG__K_OR || n->kind == SEG__K_NOT) {
            n->timed = 0;
            for (int c = i + 1, k = 0; k < n->nkids; k++, c += r->nodes[c].size)
                n->timed |= r->nodes[c].timed;
        } else {
            n->timed = (uint8_t)leaf_timed(n);
        }
    }
    r->time_based = r->nnodes > 0 && r->nodes[0].timed;

    free(r->deps);
    r->deps = NULL;
    r->ndeps = 0;
    for (int i = 0; i < r->nnodes; i++) {
        const seg__node *n = &r->nodes[i];
        if (n->kind != SEG__K_TRAIT && n->kind != SEG__K_METRIC && n->kind != SEG__K_TIME)
            continue;
        seg_dep d = leaf_dep(r, n);
        size_t j = 0;
        while (j < r->ndeps && !(r->deps[j].kind == d.kind && r->deps[j].name == d.name))
            j++;   /* names are interned: equal names are the same pointer */
        if (j < r->ndeps)
            continue;
        seg_dep *nd = realloc(r->deps, (r->ndeps + 1) * sizeof(seg_dep));
        if (!nd)
            return -1;
        r->deps = nd;
        r->deps[r->ndeps++] = d;
    }
    return 0;
}

size_t seg_rule_deps(const seg_rule *r, const seg_dep **out)
{
    *out = r->deps;
    return r->ndeps;
}

int seg_rule_time_based(const seg_rule *r)
{
    return r->time_based;
}

int seg_dep_format(const seg_dep *d, char *out, size_t outlen)
{
    static const char *const kinds[] = {
        [SEG_DEP_TRAIT] = "trait",         [SEG_DEP_EVENT] = "event",
        [SEG_DEP_REVENUE] = "revenue",     [SEG_DEP_TOTAL_EVENTS] = "total_events",
        [SEG_DEP_FIRST_SEEN] = "first_seen", [SEG_DEP_LAST_SEEN] = "last_seen",
        [SEG_DEP_CHANNEL] = "channel",
    };
    if ((int)d->kind < SEG_DEP_TRAIT || d->kind > SEG_DEP_CHANNEL)
        return -1;
    if (d->name)
        return snprintf(out, outlen, "%s:%s", kinds[d->kind], d->name);
    return snprintf(out, outlen, "%s", kinds[d->kind]);
}

/* ---------------------------------------------------------- validation */

const char *const seg__op_names[SEG__OP_COUNT_] = {
    [SEG__OP_EQ] = "=",          [SEG__OP_NE] = "!=",
    [SEG__OP_LT] = "<",          [SEG__OP_LE] = "<=",
    [SEG__OP_GT] = ">",          [SEG__OP_GE] = ">=",
    [SEG__OP_IN] = "in",         [SEG__OP_CONTAINS] = "contains",
    [SEG__OP_STARTS_WITH] = "starts_with", [SEG__OP_EXISTS] = "exists",
    [SEG__OP_WITHIN] = "within", [SEG__OP_BEFORE] = "before",
};

int seg__op_lookup(const char *name, size_t len)
{
    for (int i = 0; i < SEG__OP_COUNT_; i++)
        if (strlen(seg__op_names[i]) == len && memcmp(seg__op_names[i], name, len) == 0)
            return i;
    return -1;
}

const char *seg__string_problem(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        unsigned c = u[i];
        if (c < 0x80) {
            if (c < 0x20 && c != '\n' && c != '\t')
                return "control character in string (only \\n and \\t are allowed)";
            if (c == 0x7f)
                return "control character in string (only \\n and \\t are allowed)";
            i++;
            continue;
        }
        /* UTF-8: the lead byte gives the length; reject overlongs,
         * surrogates and code points past U+10FFFF. */
        size_t n;
        unsigned cp, min;
        if (c >= 0xc2 && c <= 0xdf)
            n = 2, cp = c & 0x1f, min = 0x80;
        else if (c >= 0xe0 && c <= 0xef)
            n = 3, cp = c & 0x0f, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4)
            n = 4, cp = c & 0x07, min = 0x10000;
        else
            return "invalid UTF-8 in string";
        if (i + n > len)
            return "invalid UTF-8 in string";
        for (size_t k = 1; k < n; k++) {
            if ((u[i + k] & 0xc0) != 0x80)
                return "invalid UTF-8 in string";
            cp = (cp << 6) | (u[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return "invalid UTF-8 in string";
        i += n;
    }
    return NULL;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

/* Matches s from *i against pat, where each run of 'd' is a number of
 * exactly that many digits (stored in order into vals) and any other
 * character must appear as is. Returns 0, or -1 on a mismatch. */
static int scan(const char *s, size_t len, size_t *i, const char *pat, int *vals)
{
    for (const char *p = pat; *p;) {
        if (*p != 'd') {
            if (*i >= len || s[*i] != *p)
                return -1;
            (*i)++, p++;
            continue;
        }
        int v = 0;
        for (; *p == 'd'; p++, (*i)++) {
            if (*i >= len || s[*i] < '0' || s[*i] > '9')
                return -1;
            v = v * 10 + (s[*i] - '0');
        }
        *vals++ = v;
    }
    return 0;
}

const char *seg__parse_time(const char *s, size_t len, int64_t *out_ms)
{
    static const char shape[] = "expected \"YYYY-MM-DD\" or \"YYYY-MM-DDTHH:MM:SS[.fff]Z\"";
    static const char offset[] = "expected an offset Z, +hh:mm or -hh:mm";
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    size_t i = 0;
    int ymd[3], hms[3], off[2];
    if (scan(s, len, &i, "dddd-dd-dd", ymd) < 0)
        return shape;
    int y = ymd[0], mo = ymd[1], d = ymd[2];
    if (y < 1970)
        return "year before 1970";
    if (mo < 1 || mo > 12)
        return "month out of range (01..12)";
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d < 1 || d > mdays[mo - 1] + (mo == 2 && leap))
        return "day out of range for the month";
    int64_t ms = days_from_civil(y, mo, d) * SEG__DAY_MS;
    if (i == len) {
        *out_ms = ms;
        return NULL;
    }
    if (scan(s, len, &i, "Tdd:dd:dd", hms) < 0)
        return shape;
    int hh = hms[0], mi = hms[1], ss = hms[2];
    if (hh > 23 || mi > 59 || ss > 59)
        return "time of day out of range";
    ms += ((int64_t)hh * 3600 + mi * 60 + ss) * 1000;
    if (i < len && s[i] == '.') {
        i++;
        int frac = 0, nd = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (nd < 3)
                frac = frac * 10 + (s[i] - '0');
            nd++, i++;
        }
        if (nd == 0 || nd > 9)
            return "expected 1 to 9 digits of fractional seconds";
        for (int k = nd; k < 3; k++)
            frac *= 10;
        ms += frac;
    }
    if (i < len && s[i] == 'Z') {
        i++;
    } else if (i < len && (s[i] == '+' || s[i] == '-')) {
        int sign = s[i++] == '+' ? 1 : -1;
        if (scan(s, len, &i, "dd:dd", off) < 0)
            return offset;
        int oh = off[0], om = off[1];
        if (oh > 23 || om > 59)
            return "offset out of range";
        ms -= sign * ((int64_t)oh * 60 + om) * 60000;
    } else {
        return offset;
    }
    if (i != len)
        return shape;
    if (ms < 0 || ms > SEG__MAX_TIME_MS)
        return "time out of range (1970 .. 9999)";
    *out_ms = ms;
    return NULL;
}

void seg__format_time(int64_t ms, char out[32])
{
    int64_t day = ms / SEG__DAY_MS, rem = ms % SEG__DAY_MS;
    int y, m, d;
    civil_from_days(day, &y, &m, &d);
    int n = snprintf(out, 32, "%04d-%02d-%02d", y, m, d);
    if (rem == 0)
        return;
    int sec = (int)(rem / 1000), frac = (int)(rem % 1000);
    n += snprintf(out + n, 32 - (size_t)n, "T%02d:%02d:%02d", sec / 3600, sec / 60 % 60, sec % 60);
    if (frac)
        n += snprintf(out + n, 32 - (size_t)n, ".%03d", frac);
    snprintf(out + n, 32 - (size_t)n, "Z");
}

void seg__format_duration(int64_t ms, char out[32])
{
    static const struct { char unit; int64_t ms; } units[] = {
        {'w', 7 * SEG__DAY_MS}, {'d', SEG__DAY_MS}, {'h', 3600000}, {'m', 60000},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (ms % units[i].ms == 0 || i + 1 == sizeof units / sizeof units[0]) {
            snprintf(out, 32, "%lld%c", (long long)(ms / units[i].ms), units[i].unit);
            return;
        }
}

void seg__error(seg_rule_error *err, const char *text, int offset, const char *fmt, ...)
{
    if (!err)
        return;
    err->offset = offset;
    err->line = err->column = 0;
    if (text) {
        int line = 1, col = 1;
        for (int i = 0; i < offset && text[i]; i++) {
            if (text[i] == '\n')
                line++, col = 1;
            else
                col++;
        }
        err->line = line;
        err->column = col;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------- canonical text */

typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} textbuf;

static void tb_put(textbuf *t, const char *s, size_t n)
{
    if (t->oom)
        return;
    if (t->len + n + 1 > t->cap) {
        size_t ncap = t->cap ? t->cap : 64;
        while (ncap < t->len + n + 1)
            ncap *= 2;
        char *nb = realloc(t->buf, ncap);
        if (!nb) {
            t->oom = 1;
            return;
        }
        t->buf = nb;
        t->cap = ncap;
    }
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

static void tb_str(textbuf *t, const char *s)
{
    tb_put(t, s, strlen(s));
}

/* A string literal with the grammar's escapes. */
static void tb_quoted(textbuf *t, const seg__str *s)
{
    tb_put(t, "\"", 1);
    size_t start = 0;
    for (size_t i = 0; i < s->len; i++) {
        const char *esc = s->s[i] == '"' ? "\\\"" : s->s[i] == '\\' ? "\\\\"
                        : s->s[i] == '\n' ? "\\n" : s->s[i] == '\t' ? "\\t" : NULL;
        if (!esc)
            continue;
        tb_put(t, s->s + start, i - start);
        tb_str(t, esc);
        start = i + 1;
    }
    tb_put(t, s->s + start, s->len - start);
    tb_put(t, "\"", 1);
}

/* A number that parses back to the same double. */
static void tb_number(textbuf *t, double v)
{
    char b[40];
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(b, sizeof b, "%.0f", v);   /* integers as integers, "-0" kept */
        tb_str(t, b);
        return;
    }
    snprintf(b, sizeof b, "%.17g", v);
    for (int prec = 1; prec < 17; prec++) {
        char s[40];
        snprintf(s, sizeof s, "%.*g", prec, v);
        if (strtod(s, NULL) == v) {
            memcpy(b, s, sizeof s);
            break;
        }
    }
    tb_str(t, b);
}

static void tb_lit(textbuf *t, const seg_rule *r, const seg__lit *l)
{
    switch (l->type) {
    case SEG__V_NULL: tb_str(t, "null"); break;
    case SEG__V_BOOL: tb_str(t, l->b ? "true" : "false"); break;
    case SEG__V_NUM: tb_number(t, l->num); break;
    default: tb_quoted(t, &r->strs[l->str]); break;
    }
}

static int is_ident(const seg__str *s)
{
    if (s->len == 0 || (s->s[0] >= '0' && s->s[0] <= '9'))
        return 0;
    for (size_t i = 0; i < s->len; i++) {
        char c = s->s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return 1;
}

static void tb_trait(textbuf *t, const seg_rule *r, const seg__node *n)
{
    const seg__str *name = &r->strs[n->name];
    if (is_ident(name)) {
        tb_str(t, "trait.");
        tb_str(t, name->s);
    } else {
        tb_str(t, "trait(");
        tb_quoted(t, name);
        tb_str(t, ")");
    }
    tb_str(t, " ");
    tb_str(t, seg__op_names[n->op]);
    if (n->op == SEG__OP_EXISTS)
        return;
    tb_str(t, " ");
    if (n->op == SEG__OP_IN)
        tb_str(t, "[");
    for (int i = 0; i < n->nlits; i++) {
        if (i)
            tb_str(t, ", ");
        tb_lit(t, r, &r->lits[n->lit + i]);
    }
    if (n->op == SEG__OP_IN)
        tb_str(t, "]");
}

static void tb_window(textbuf *t, int days)
{
    char b[32];
    seg__format_duration(days * SEG__DAY_MS, b);
    tb_str(t, ", ");
    tb_str(t, b);
}

static void tb_metric(textbuf *t, const seg_rule *r, const seg__node *n)
{
    if (n->src == SEG__M_COUNT) {
        tb_str(t, "count(");
        tb_quoted(t, &r->strs[n->name]);
        if (n->days)
            tb_window(t, n->days);
        tb_str(t, ")");
    } else if (n->src == SEG__M_REVENUE && n->days) {
        tb_str(t, "sum(revenue");
        tb_window(t, n->days);
        tb_str(t, ")");
    } else {
        tb_str(t, n->src == SEG__M_REVENUE ? "revenue" : "total_events");
    }
    tb_str(t, " ");
    tb_str(t, seg__op_names[n->op]);
    tb_str(t, " ");
    tb_number(t, n->num);
}

static void tb_time(textbuf *t, const seg_rule *r, const seg__node *n)
{
    if (n->src == SEG__T_CHANNEL) {
        tb_str(t, "last_interaction(");
        tb_quoted(t, &r->strs[n->name]);
        tb_str(t, ")");
    } else {
        tb_str(t, n->src == SEG__T_FIRST_SEEN ? "first_seen" : "last_seen");
    }
    tb_str(t, " ");
    tb_str(t, seg__op_names[n->op]);
    char b[32];
    if (n->op == SEG__OP_WITHIN || n->op == SEG__OP_BEFORE) {
        seg__format_duration(n->ms, b);
        tb_str(t, " ");
        tb_str(t, b);
    } else if (n->op != SEG__OP_EXISTS) {
        seg__format_time(n->ms, b);
        tb_str(t, " \"");
        tb_str(t, b);
        tb_str(t, "\"");
    }
}

int seg__needs_parens(int parent, int child)
{
    if (child == SEG__K_OR)
        return parent >= 0;
    if (child == SEG__K_AND)
        return parent == SEG__K_AND || parent == SEG__K_NOT;
    return 0;
}

/* Prints the subtree at i, parenthesising as seg__needs_parens says, so
 * the text parses back to exactly this tree shape. */
static void tb_node(textbuf *t, const seg_rule *r, int i)
{
    const seg__node *n = &r->nodes[i];
    switch (n->kind) {
    case SEG__K_TRUE: tb_str(t, "true"); return;
    case SEG__K_FALSE: tb_str(t, "false"); return;
    case SEG__K_TRAIT: tb_trait(t, r, n); return;
    case SEG__K_METRIC: tb_metric(t, r, n); return;
    case SEG__K_TIME: tb_time(t, r, n); return;
    default: break;
    }
    if (n->kind == SEG__K_NOT)
        tb_str(t, "not ");
    for (int c = i + 1, k = 0; k < n->nkids; k++, c += r->nodes[c].size) {
        if (k)
            tb_str(t, n->kind == SEG__K_AND ? " and " : " or ");
        int paren = seg__needs_parens(n->kind, r->nodes[c].kind);
        if (paren)
            tb_str(t, "(");
        tb_node(t, r, c);
        if (paren)
            tb_str(t, ")");
    }
}

char *seg_rule_to_text(const seg_rule *r)
{
    textbuf t = {0};
    tb_node(&t, r, 0);
    if (t.oom) {
        free(t.buf);
        return NULL;
    }
    return t.buf;
}
