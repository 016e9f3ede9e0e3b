/* seg_rule_parse: the rule text -> parsed form (seg_rule_parse in
 * seg_rule.h). A hand-written lexer and recursive-descent parser over the
 * grammar in seg_rule.h. Nodes are appended in prefix order as they are
 * parsed; an AND/OR node is inserted in front of its first child once the
 * first "and"/"or" shows the child is one of several.
 *
 * Errors name the position of the offending token (the opening quote of an
 * unterminated string, the backslash of a bad escape), what was expected
 * and what was found; the first error wins. */
#include "seg_rule_int.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ lexer */

typedef enum {
    T_EOF,
    T_IDENT,
    T_STRING,
    T_NUMBER,   /* a number, possibly with a suffix such as the d of 30d */
    T_CMP,      /* = != < <= > >= */
    T_LPAREN,
    T_RPAREN,
    T_LBRACK,
    T_RBRACK,
    T_COMMA,
    T_DOT,
    T_ERROR,    /* the lexer already reported an error */
} tkind;

typedef struct {
    tkind kind;
    int start, len;     /* byte range in the text */
    int op;             /* T_CMP: the seg__op */
    /* T_NUMBER: the numeric part is [start, start+numlen); the rest of the
     * token is the suffix. `plain` is set for digits only (no sign, point
     * or exponent). */
    int numlen, plain;
    /* T_STRING: the decoded value in the parser's scratch buffer. */
} token;

typedef struct {
    const char *text;
    int pos;
    token tok;
    char *str;          /* decoded value of the current T_STRING */
    size_t strlen, strcap;
    seg_rule *rule;
    seg_rule_error *err;
    int failed;
    int depth;
} parser;

static void fail(parser *p, int offset, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail(parser *p, int offset, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = 1;
    char msg[sizeof p->err->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    seg__error(p->err, p->text, offset, "%s", msg);
}

static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int str_push(parser *p, char c)
{
    if (p->strlen + 1 >= p->strcap) {
        size_t ncap = p->strcap ? p->strcap * 2 : 64;
        char *n = realloc(p->str, ncap);
        if (!n) {
            fail(p, p->tok.start, "out of memory");
            return -1;
        }
        p->str = n;
        p->strcap = ncap;
    }
    p->str[p->strlen++] = c;
    p->str[p->strlen] = '\0';
    return 0;
}

/* Lexes a string starting at the opening quote at p->pos. */
static void lex_string(parser *p)
{
    const char *t = p->text;
    int i = p->pos + 1;
    p->strlen = 0;
    if (str_push(p, '\0') < 0)  /* make sure str is allocated */
        return;
    p->strlen = 0;
    for (;;) {
        char c = t[i];
        if (c == '\0' || c == '\n') {
            fail(p, p->pos, "unterminated string: missing closing '\"'");
            p->tok.kind = T_ERROR;
            return;
        }
        if (c == '"')
            break;
        if (c == '\\') {
            char e = t[i + 1];
            char v = e == '"' ? '"' : e == '\\' ? '\\' : e == 'n' ? '\n' : e == 't' ? '\t' : 0;
            if (!v) {
                if (e == '\0' || e == '\n')
                    fail(p, p->pos, "unterminated string: missing closing '\"'");
                else if ((unsigned char)e >= 0x20 && (unsigned char)e < 0x7f)
                    fail(p, i, "bad escape '\\%c' in string: use \\\", \\\\, \\n or \\t", e);
                else
                    fail(p, i, "bad escape in string: use \\\", \\\\, \\n or \\t");
                p->tok.kind = T_ERROR;
                return;
            }
            if (str_push(p, v) < 0)
                return;
            i += 2;
            continue;
        }
        if (str_push(p, c) < 0)
            return;
        i++;
    }
    const char *why = seg__string_problem(p->str, p->strlen);
    if (why) {
        fail(p, p->pos, "%s", why);
        p->tok.kind = T_ERROR;
        return;
    }
    p->tok.kind = T_STRING;
    p->tok.len = i + 1 - p->pos;
}

/* Lexes a number (and any letters glued to it) at p->pos. */
static void lex_number(parser *p)
{
    const char *t = p->text;
    int i = p->pos, plain = 1;
    if (t[i] == '-')
        i++, plain = 0;
    while (is_digit(t[i]))
        i++;
    if (t[i] == '.' && is_digit(t[i + 1])) {
        plain = 0;
        for (i++; is_digit(t[i]); i++)
            ;
    }
    if ((t[i] == 'e' || t[i] == 'E') &&
        (is_digit(t[i + 1]) || ((t[i + 1] == '+' || t[i + 1] == '-') && is_digit(t[i + 2])))) {
        plain = 0;
        for (i += 2; is_digit(t[i]); i++)
            ;
    }
    p->tok.numlen = i - p->pos;
    p->tok.plain = plain;
    while (is_alpha(t[i]) || is_digit(t[i]))
        i++;
    p->tok.kind = T_NUMBER;
    p->tok.len = i - p->pos;
}

/* Reads the next token into p->tok. */
static void next(parser *p)
{
    const char *t = p->text;
    while (t[p->pos] == ' ' || t[p->pos] == '\t' || t[p->pos] == '\n' || t[p->pos] == '\r')
        p->pos++;
    token *k = &p->tok;
    memset(k, 0, sizeof *k);
    k->start = p->pos;
    k->len = 1;
    char c = t[p->pos];
    if (c == '\0') {
        k->kind = T_EOF;
        k->len = 0;
    } else if (is_alpha(c)) {
        int i = p->pos;
        while (is_alpha(t[i]) || is_digit(t[i]))
            i++;
        k->kind = T_IDENT;
        k->len = i - p->pos;
    } else if (c == '"') {
        lex_string(p);
    } else if (is_digit(c) || (c == '-' && is_digit(t[p->pos + 1]))) {
        lex_number(p);
    } else if (c == '=' || c == '<' || c == '>' || (c == '!' && t[p->pos + 1] == '=')) {
        int two = t[p->pos + 1] == '=' && c != '=';
        k->kind = T_CMP;
        k->len = 1 + two;
        k->op = c == '=' ? SEG__OP_EQ : c == '!' ? SEG__OP_NE
              : c == '<' ? (two ? SEG__OP_LE : SEG__OP_LT) : (two ? SEG__OP_GE : SEG__OP_GT);
    } else if (strchr("()[],.", c)) {
        static const tkind kinds[] = {T_LPAREN, T_RPAREN, T_LBRACK, T_RBRACK, T_COMMA, T_DOT};
        k->kind = kinds[strchr("()[],.", c) - "()[],."];
    } else {
        if (c == '!')
            fail(p, p->pos, "unexpected character '!' (did you mean '!='?)");
        else if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
            fail(p, p->pos, "unexpected character '%c'", c);
        else
            fail(p, p->pos, "unexpected byte 0x%02X", (unsigned char)c);
        k->kind = T_ERROR;
    }
    p->pos = k->start + k->len;
}

static int is_word(const parser *p, const char *w)
{
    return p->tok.kind == T_IDENT && (size_t)p->tok.len == strlen(w) &&
           memcmp(p->text + p->tok.start, w, (size_t)p->tok.len) == 0;
}

/* "'abc'" or "end of input": what the parser found, for messages. */
static const char *found(const parser *p, char buf[48])
{
    if (p->tok.kind == T_EOF)
        return "end of input";
    int n = p->tok.len;
    if (n > 32)
        snprintf(buf, 48, "'%.32s...'", p->text + p->tok.start);
    else
        snprintf(buf, 48, "'%.*s'", n, p->text + p->tok.start);
    return buf;
}

/* Fails with "expected <what>, found <token>" at the current token. */
static void expected(parser *p, const char *what)
{
    char b[48];
    if (p->tok.kind != T_ERROR)
        fail(p, p->tok.start, "expected %s, found %s", what, found(p, b));
}

/* Consumes a token of kind k, or fails expecting `what`. */
static int expect_tok(parser *p, tkind k, const char *what)
{
    if (p->tok.kind != k) {
        expected(p, what);
        return -1;
    }
    next(p);
    return 0;
}

/* ------------------------------------------------------------- building */

static seg__node *new_node(parser *p, seg__kind kind)
{
    int i = seg__node_add(p->rule);
    if (i < 0) {
        if (p->rule->nnodes >= SEG_RULE_MAX_NODES)
            fail(p, p->tok.start, "rule has more than %d nodes", SEG_RULE_MAX_NODES);
        else
            fail(p, p->tok.start, "out of memory");
        return NULL;
    }
    p->rule->nodes[i].kind = (uint8_t)kind;
    return &p->rule->nodes[i];
}

/* Interns the current string token (its decoded value); -1 on failure. */
static int intern_string(parser *p)
{
    int s = seg__intern(p->rule, p->str, p->strlen);
    if (s < 0)
        fail(p, p->tok.start, "out of memory");
    return s;
}

/* A string naming something (trait, count name, channel): non-empty. */
static int name_string(parser *p, const char *what)
{
    if (p->tok.kind != T_STRING) {
        expected(p, what);
        return -1;
    }
    if (p->strlen == 0) {
        fail(p, p->tok.start, "%s must not be empty", what);
        return -1;
    }
    int s = intern_string(p);
    next(p);
    return s;
}

/* -------------------------------------------------------------- numbers */

/* The current T_NUMBER token as a finite double, without suffix. */
static int number(parser *p, const char *after, double *out)
{
    char b[48];
    if (p->tok.kind != T_NUMBER || p->tok.numlen != p->tok.len) {
        if (p->tok.kind != T_ERROR)
            fail(p, p->tok.start, "expected a number after '%s', found %s", after, found(p, b));
        return -1;
    }
    char num[64];
    if (p->tok.len >= (int)sizeof num) {
        fail(p, p->tok.start, "number out of range: %s", found(p, b));
        return -1;
    }
    memcpy(num, p->text + p->tok.start, (size_t)p->tok.len);
    num[p->tok.len] = '\0';
    errno = 0;
    double v = strtod(num, NULL);
    if (!isfinite(v) || (errno == ERANGE && fabs(v) > 1)) {
        fail(p, p->tok.start, "number out of range: %s", found(p, b));
        return -1;
    }
    *out = v;
    next(p);
    return 0;
}

/* A duration <n>(m|h|d|w) in ms; with days_only (count/sum windows) only
 * d and w. `after` is the token before it, for messages. */
static int duration(parser *p, const char *after, int days_only, int64_t *ms)
{
    char b[48];
    const char *example = days_only ? "a window in days such as 30d" : "a duration such as 30d";
    if (p->tok.kind != T_NUMBER || !p->tok.plain) {
        if (p->tok.kind != T_ERROR)
            fail(p, p->tok.start, "expected %s after '%s', found %s", example, after, found(p, b));
        return -1;
    }
    int suffix = p->tok.len - p->tok.numlen;
    char unit = suffix == 1 ? p->text[p->tok.start + p->tok.numlen] : 0;
    if (suffix == 0) {
        fail(p, p->tok.start, "expected %s after '%s', found %s (a number without a unit)",
             example, after, found(p, b));
        return -1;
    }
    if (unit != 'm' && unit != 'h' && unit != 'd' && unit != 'w') {
        fail(p, p->tok.start, "bad duration unit in %s: use m, h, d or w", found(p, b));
        return -1;
    }
    if (days_only && unit != 'd' && unit != 'w') {
        fail(p, p->tok.start, "a count or sum window must be whole days (d or w), found %s",
             found(p, b));
        return -1;
    }
    int64_t unit_ms = unit == 'm' ? 60000 : unit == 'h' ? 3600000
                    : unit == 'd' ? SEG__DAY_MS : 7 * SEG__DAY_MS;
    int64_t n = 0;
    for (int i = 0; i < p->tok.numlen; i++) {
        n = n * 10 + (p->text[p->tok.start + i] - '0');
        if (n * unit_ms > SEG__MAX_DAYS * SEG__DAY_MS) {
            fail(p, p->tok.start, "duration out of range: %s is more than %d days",
                 found(p, b), SEG__MAX_DAYS);
            return -1;
        }
    }
    if (n == 0) {
        fail(p, p->tok.start, "duration out of range: %s must be at least 1%c", found(p, b), unit);
        return -1;
    }
    *ms = n * unit_ms;
    next(p);
    return 0;
}

/* ------------------------------------------------------------ conditions */

static const char literal_what[] = "a value (string, number, true, false or null)";

/* A literal after `after`; appends it to the rule's literals. Booleans and
 * null are refused for ordering comparisons (op < > <= >=). */
static int literal(parser *p, const char *after, int op)
{
    seg__lit l = {.str = -1};
    int start = p->tok.start;
    char b[48];
    if (p->tok.kind == T_STRING) {
        l.type = SEG__V_STR;
        if ((l.str = intern_string(p)) < 0)
            return -1;
        next(p);
    } else if (p->tok.kind == T_NUMBER) {
        l.type = SEG__V_NUM;
        if (number(p, after, &l.num) < 0)
            return -1;
    } else if (is_word(p, "true") || is_word(p, "false") || is_word(p, "null")) {
        l.type = is_word(p, "null") ? SEG__V_NULL : SEG__V_BOOL;
        l.b = is_word(p, "true");
        if (op >= SEG__OP_LT && op <= SEG__OP_GE) {
            fail(p, start, "'%s' cannot compare with %s: booleans and null only support = and !=",
                 after, found(p, b));
            return -1;
        }
        next(p);
    } else {
        char what[96];
        snprintf(what, sizeof what, "%s after '%s'", literal_what, after);
        expected(p, what);
        return -1;
    }
    if (seg__lit_add(p->rule, &l) < 0) {
        fail(p, start, "rule has more than %d list values", SEG__MAX_LITS);
        return -1;
    }
    return 0;
}

/* trait.<ident> | trait("<name>"), then its condition. */
static void trait_cond(parser *p)
{
    int name, name_is_ident = 0;
    next(p); /* trait */
    if (p->tok.kind == T_DOT) {
        next(p);
        if (p->tok.kind != T_IDENT) {
            expected(p, "a trait name after 'trait.'");
            return;
        }
        if ((name = seg__intern(p->rule, p->text + p->tok.start, (size_t)p->tok.len)) < 0) {
            fail(p, p->tok.start, "out of memory");
            return;
        }
        name_is_ident = 1;
        next(p);
    } else if (p->tok.kind == T_LPAREN) {
        next(p);
        if ((name = name_string(p, "a trait name string after 'trait('")) < 0 ||
            expect_tok(p, T_RPAREN, "')' after the trait name") < 0)
            return;
    } else {
        expected(p, "'.' or '(' after 'trait'");
        return;
    }
    seg__node *n = new_node(p, SEG__K_TRAIT);
    if (!n)
        return;
    int node = (int)(n - p->rule->nodes);
    n->name = name;
    n->lit = p->rule->nlits;
    int op;
    if (p->tok.kind == T_CMP)
        op = p->tok.op;
    else if (p->tok.kind == T_IDENT && (is_word(p, "contains") || is_word(p, "starts_with") ||
                                        is_word(p, "in") || is_word(p, "exists")))
        op = seg__op_lookup(p->text + p->tok.start, (size_t)p->tok.len);
    else {
        char what[160];
        const char *nm = p->rule->strs[name].s;
        snprintf(what, sizeof what,
                 "a comparison operator, 'contains', 'starts_with', 'in' or 'exists' after %s%.40s%s",
                 name_is_ident ? "trait." : "trait(\"", nm, name_is_ident ? "" : "\")");
        expected(p, what);
        return;
    }
    const char *opname = seg__op_names[op];
    n->op = (uint8_t)op;
    next(p);
    if (op == SEG__OP_EXISTS) {
        n->lit = -1;
        return;
    }
    if (op == SEG__OP_CONTAINS || op == SEG__OP_STARTS_WITH) {
        if (p->tok.kind != T_STRING) {
            char what[64];
            snprintf(what, sizeof what, "a string after '%s'", opname);
            expected(p, what);
            return;
        }
        if (literal(p, opname, op) == 0)
            p->rule->nodes[node].nlits = 1;
        return;
    }
    if (op != SEG__OP_IN) {
        if (literal(p, opname, op) == 0)
            p->rule->nodes[node].nlits = 1;
        return;
    }
    if (expect_tok(p, T_LBRACK, "'[' after 'in'") < 0)
        return;
    if (p->tok.kind == T_RBRACK) {
        fail(p, p->tok.start, "'in' needs at least one value, found ']'");
        return;
    }
    int count = 0;
    for (;;) {
        if (literal(p, count ? "," : "[", op) < 0)
            return;
        count++;
        if (p->tok.kind == T_RBRACK)
            break;
        if (expect_tok(p, T_COMMA, "',' or ']' in the 'in' list") < 0)
            return;
    }
    next(p);
    p->rule->nodes[node].nlits = count;
}

/* The comparison and number after a metric. */
static void metric_tail(parser *p, seg__node *n, const char *metric)
{
    if (p->tok.kind != T_CMP) {
        char what[96];
        snprintf(what, sizeof what, "a comparison operator after %s", metric);
        expected(p, what);
        return;
    }
    n->op = (uint8_t)p->tok.op;
    next(p);
    (void)number(p, seg__op_names[n->op], &n->num);
}

/* count("<name>" [, window]) | sum(revenue [, window]) | revenue | total_events */
static void metric_cond(parser *p)
{
    int is_count = is_word(p, "count"), is_sum = is_word(p, "sum");
    const char *metric = is_count ? "count(...)" : is_sum ? "sum(...)"
                       : is_word(p, "revenue") ? "revenue" : "total_events";
    seg__node *n = new_node(p, SEG__K_METRIC);
    if (!n)
        return;
    int node = (int)(n - p->rule->nodes);
    n->src = is_count ? SEG__M_COUNT : (is_sum || is_word(p, "revenue")) ? SEG__M_REVENUE
                                                                        : SEG__M_TOTAL_EVENTS;
    next(p);
    if (is_count || is_sum) {
        if (expect_tok(p, T_LPAREN, is_count ? "'(' after 'count'" : "'(' after 'sum'") < 0)
            return;
        if (is_count) {
            int name = name_string(p, "a count name string after 'count('");
            if (name < 0)
                return;
            p->rule->nodes[node].name = name;
        } else {
            if (!is_word(p, "revenue")) {
                expected(p, "'revenue' after 'sum('");
                return;
            }
            next(p);
        }
        if (p->tok.kind == T_COMMA) {
            next(p);
            int64_t ms;
            if (duration(p, ",", 1, &ms) < 0)
                return;
            p->rule->nodes[node].days = (int32_t)(ms / SEG__DAY_MS);
        }
        if (expect_tok(p, T_RPAREN, is_count ? "',' or ')' after the count name"
                                         : "',' or ')' after 'revenue'") < 0)
            return;
    }
    metric_tail(p, &p->rule->nodes[node], metric);
}

/* first_seen | last_seen | last_interaction("<channel>"), then its condition. */
static void time_cond(parser *p)
{
    const char *what = is_word(p, "first_seen") ? "first_seen"
                     : is_word(p, "last_seen") ? "last_seen" : "last_interaction(...)";
    seg__node *n = new_node(p, SEG__K_TIME);
    if (!n)
        return;
    int node = (int)(n - p->rule->nodes);
    n->src = is_word(p, "first_seen") ? SEG__T_FIRST_SEEN
           : is_word(p, "last_seen") ? SEG__T_LAST_SEEN : SEG__T_CHANNEL;
    next(p);
    if (n->src == SEG__T_CHANNEL) {
        if (expect_tok(p, T_LPAREN, "'(' after 'last_interaction'") < 0)
            return;
        int name = name_string(p, "a channel string after 'last_interaction('");
        if (name < 0 || expect_tok(p, T_RPAREN, "')' after the channel") < 0)
            return;
        p->rule->nodes[node].name = name;
    }
    n = &p->rule->nodes[node];
    if (is_word(p, "within") || is_word(p, "before")) {
        n->op = is_word(p, "within") ? SEG__OP_WITHIN : SEG__OP_BEFORE;
        next(p);
        (void)duration(p, seg__op_names[n->op], 0, &n->ms);
    } else if (is_word(p, "exists")) {
        n->op = SEG__OP_EXISTS;
        next(p);
    } else if (p->tok.kind == T_CMP) {
        n->op = (uint8_t)p->tok.op;
        const char *opname = seg__op_names[n->op];
        next(p);
        if (p->tok.kind != T_STRING) {
            char w[160];
            snprintf(w, sizeof w,
                     "a timestamp such as \"2026-01-01\" or \"2026-01-01T10:00:00Z\" after '%s'",
                     opname);
            expected(p, w);
            return;
        }
        const char *why = seg__parse_time(p->str, p->strlen, &n->ms);
        if (why) {
            char b[48];
            fail(p, p->tok.start, "invalid timestamp %s: %s", found(p, b), why);
            return;
        }
        next(p);
    } else {
        char w[128];
        snprintf(w, sizeof w, "'within', 'before', 'exists' or a comparison operator after %s", what);
        expected(p, w);
    }
}

/* ------------------------------------------------------------ structure */

static void parse_or(parser *p);

static int is_keyword_lower(const parser *p)
{
    static const char *const kw[] = {
        "and", "or", "not", "true", "false", "null", "trait", "count", "sum", "revenue",
        "total_events", "first_seen", "last_seen", "last_interaction", "within", "before",
        "exists", "contains", "starts_with", "in",
    };
    char low[24];
    if (p->tok.kind != T_IDENT || p->tok.len >= (int)sizeof low)
        return 0;
    for (int i = 0; i < p->tok.len; i++) {
        char c = p->text[p->tok.start + i];
        low[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    low[p->tok.len] = '\0';
    for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++)
        if (strcmp(kw[i], low) == 0)
            return 1;
    return 0;
}

static const char condition_what[] =
    "a condition (trait, count, sum, revenue, total_events, first_seen, last_seen, "
    "last_interaction, true, false, not or '(')";

static int enter(parser *p)
{
    if (++p->depth > SEG_RULE_MAX_DEPTH) {
        fail(p, p->tok.start, "nesting deeper than %d levels", SEG_RULE_MAX_DEPTH);
        return -1;
    }
    return 0;
}

static void atom(parser *p)
{
    if (p->tok.kind == T_LPAREN) {
        int open = p->tok.start;
        if (enter(p) < 0)
            return;
        next(p);
        parse_or(p);
        p->depth--;
        if (p->failed)
            return;
        if (p->tok.kind != T_RPAREN) {
            char b[48];
            seg_rule_error where;
            seg__error(&where, p->text, open, "%s", "");
            fail(p, p->tok.start, "expected ')' to close the '(' at line %d, column %d, found %s",
                 where.line, where.column, found(p, b));
            return;
        }
        next(p);
    } else if (is_word(p, "true") || is_word(p, "false")) {
        if (new_node(p, is_word(p, "true") ? SEG__K_TRUE : SEG__K_FALSE))
            next(p);
    } else if (is_word(p, "trait")) {
        trait_cond(p);
    } else if (is_word(p, "count") || is_word(p, "sum") || is_word(p, "revenue") ||
               is_word(p, "total_events")) {
        metric_cond(p);
    } else if (is_word(p, "first_seen") || is_word(p, "last_seen") ||
               is_word(p, "last_interaction")) {
        time_cond(p);
    } else if (p->tok.kind == T_IDENT) {
        char b[48];
        fail(p, p->tok.start, "unknown keyword %s%s; expected %s", found(p, b),
             is_keyword_lower(p) ? " (keywords are lower case)" : "", condition_what);
    } else {
        expected(p, condition_what);
    }
}

static void parse_not(parser *p)
{
    if (!is_word(p, "not")) {
        atom(p);
        return;
    }
    if (enter(p) < 0)
        return;
    seg__node *n = new_node(p, SEG__K_NOT);
    if (!n)
        return;
    int node = (int)(n - p->rule->nodes);
    n->nkids = 1;
    next(p);
    parse_not(p);
    p->depth--;
    p->rule->nodes[node].size = (uint16_t)(p->rule->nnodes - node);
}

/* child { "<word>" child }: an AND/OR over children parsed by `child`; a
 * single child stands alone. */
static void nary(parser *p, const char *word, seg__kind kind, void (*child)(parser *))
{
    int start = p->rule->nnodes;
    child(p);
    if (p->failed || !is_word(p, word))
        return;
    if (seg__node_insert(p->rule, start) < 0) {
        fail(p, p->tok.start, "rule has more than %d nodes", SEG_RULE_MAX_NODES);
        return;
    }
    int nkids = 1;
    while (!p->failed && is_word(p, word)) {
        next(p);
        child(p);
        nkids++;
    }
    seg__node *n = &p->rule->nodes[start];
    n->kind = (uint8_t)kind;
    n->nkids = (uint16_t)nkids;
    n->size = (uint16_t)(p->rule->nnodes - start);
}

static void parse_and(parser *p)
{
    nary(p, "and", SEG__K_AND, parse_not);
}

static void parse_or(parser *p)
{
    nary(p, "or", SEG__K_OR, parse_and);
}

/* ------------------------------------------------------------------ API */

seg_rule *seg_rule_parse(const char *text, seg_rule_error *err)
{
    parser p = {.text = text, .err = err};
    size_t len = 0;
    while (len <= SEG_RULE_MAX_TEXT && text[len])
        len++;
    if (len > SEG_RULE_MAX_TEXT) {
        seg__error(err, text, SEG_RULE_MAX_TEXT, "rule is longer than %d bytes",
                   SEG_RULE_MAX_TEXT);
        return NULL;
    }
    if (!(p.rule = seg__rule_new())) {
        seg__error(err, text, 0, "out of memory");
        return NULL;
    }
    next(&p);
    if (p.tok.kind == T_EOF) {
        fail(&p, p.tok.start, "the rule is empty: expected a condition such as trait.plan = \"pro\"");
    } else {
        parse_or(&p);
        if (!p.failed && p.tok.kind != T_EOF) {
            char b[48];
            fail(&p, p.tok.start, "expected 'and', 'or' or end of input, found %s%s", found(&p, b),
                 is_keyword_lower(&p) ? " (keywords are lower case)" : "");
        }
    }
    if (!p.failed && seg__rule_finish(p.rule) < 0)
        fail(&p, 0, "out of memory");
    free(p.str);
    if (p.failed) {
        seg_rule_free(p.rule);
        return NULL;
    }
    return p.rule;
}
