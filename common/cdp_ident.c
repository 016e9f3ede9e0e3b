/* cdp_ident: identifier validation and normalization (see cdp_ident.h).
 *
 * Sections: the region table, configuration, the per-kind normalizers, and
 * the public entry point. Only ASCII is case-folded: locale-dependent folding
 * would make two replicas with different locales disagree on a key. */
#include "cdp_ident.h"

#include <stdlib.h>
#include <string.h>

/* E.164 allows at most 15 digits; we also require at least 8 so that short
 * codes and truncated numbers are not taken for a person. */
#define PHONE_MIN_DIGITS 8
#define PHONE_MAX_DIGITS 15

/* ------------------------------------------------------------ region table */

/* Calling codes and the national trunk prefix that is dropped when the
 * calling code is prepended. Italy (and San Marino) keep the leading 0 of
 * landline numbers in the international form, so they have no trunk. NANP
 * (US/CA) area codes never start with 1, so a leading 1 in a national number
 * is the long-distance prefix and is dropped. Regions whose trunk prefix is
 * not a single 0 (RU/KZ "8", HU "06") are listed without a trunk: their
 * national numbers must be written in international form. */
static const cdp_ident_region k_regions[] = {
    {"US", "1", '1'},   {"CA", "1", '1'},   {"GB", "44", '0'},  {"DE", "49", '0'},
    {"FR", "33", '0'},  {"IN", "91", '0'},  {"BR", "55", '0'},  {"ES", "34", 0},
    {"IT", "39", 0},    {"NL", "31", '0'},  {"AU", "61", '0'},  {"JP", "81", '0'},
    {"CN", "86", '0'},  {"MX", "52", 0},    {"ZA", "27", '0'},  {"NG", "234", '0'},
    {"KE", "254", '0'}, {"SG", "65", 0},    {"AE", "971", '0'}, {"SA", "966", '0'},
    {"BE", "32", '0'},  {"CH", "41", '0'},  {"AT", "43", '0'},  {"SE", "46", '0'},
    {"NO", "47", 0},    {"DK", "45", 0},    {"FI", "358", '0'}, {"PL", "48", 0},
    {"PT", "351", 0},   {"IE", "353", '0'}, {"GR", "30", 0},    {"TR", "90", '0'},
    {"IL", "972", '0'}, {"EG", "20", '0'},  {"AR", "54", '0'},  {"CO", "57", 0},
    {"CL", "56", 0},    {"PE", "51", '0'},  {"KR", "82", '0'},  {"ID", "62", '0'},
    {"MY", "60", '0'},  {"TH", "66", '0'},  {"PH", "63", '0'},  {"VN", "84", '0'},
    {"PK", "92", '0'},  {"NZ", "64", '0'},  {"HK", "852", 0},   {"TW", "886", '0'},
    {"UA", "380", '0'}, {"CZ", "420", 0},   {"RO", "40", '0'},  {"RU", "7", 0},
};
#define N_REGIONS (sizeof k_regions / sizeof k_regions[0])

static int ascii_lower(int ch) {
    return (ch >= 'A' && ch <= 'Z') ? ch - 'A' + 'a' : ch;
}

static int ascii_upper(int ch) {
    return (ch >= 'a' && ch <= 'z') ? ch - 'a' + 'A' : ch;
}

static int is_space(int ch) {
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

static int is_digit(int ch) {
    return ch >= '0' && ch <= '9';
}

const cdp_ident_region *cdp_ident_region_find(const char *iso) {
    if (iso == NULL || strlen(iso) != 2)
        return NULL;
    char up[3] = {(char)ascii_upper((unsigned char)iso[0]), (char)ascii_upper((unsigned char)iso[1]), 0};
    for (size_t i = 0; i < N_REGIONS; i++)
        if (memcmp(k_regions[i].iso, up, 3) == 0)
            return &k_regions[i];
    return NULL;
}

/* ----------------------------------------------------------- configuration */

/* Trims [*s, *s + *n) of surrounding whitespace in place (pointer/length). */
static void trim_span(const char **s, size_t *n) {
    while (*n > 0 && is_space((unsigned char)(*s)[0])) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && is_space((unsigned char)(*s)[*n - 1]))
        (*n)--;
}

/* Parses a comma-separated list into c->blocked (trimmed, lower-cased; empty
 * entries skipped). Returns 0 or -2 when an entry or the count is too big. */
static int parse_blocked(cdp_ident_config *c, const char *csv) {
    c->n_blocked = 0;
    const char *p = csv;
    while (*p != '\0') {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        const char *s = p;
        trim_span(&s, &n);
        if (n > 0) {
            if (n > CDP_IDENT_MAX_BLOCKED_LEN || c->n_blocked == CDP_IDENT_MAX_BLOCKED)
                return -2;
            for (size_t i = 0; i < n; i++)
                c->blocked[c->n_blocked][i] = (char)ascii_lower((unsigned char)s[i]);
            c->blocked[c->n_blocked][n] = '\0';
            c->n_blocked++;
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return 0;
}

int cdp_ident_config_init(cdp_ident_config *c, const char *default_region, const char *blocked_csv) {
    memset(c, 0, sizeof *c);
    c->region = cdp_ident_region_find(default_region ? default_region : CDP_IDENT_DEFAULT_REGION);
    if (c->region == NULL)
        return -1;
    return parse_blocked(c, blocked_csv ? blocked_csv : CDP_IDENT_DEFAULT_BLOCKED);
}

int cdp_ident_config_from_env(cdp_ident_config *c) {
    const char *region = getenv(CDP_IDENT_ENV_REGION);
    const char *blocked = getenv(CDP_IDENT_ENV_BLOCKED);
    if (region != NULL && region[0] == '\0')
        region = NULL;
    if (blocked != NULL && blocked[0] == '\0')
        blocked = NULL;
    return cdp_ident_config_init(c, region, blocked);
}

/* ------------------------------------------------------------------- kinds */

static const char *const k_kind_names[] = {
    [CDP_IDENT_USER_ID] = "user_id",     [CDP_IDENT_ANONYMOUS_ID] = "anonymous_id",
    [CDP_IDENT_EMAIL] = "email",         [CDP_IDENT_PHONE] = "phone",
    [CDP_IDENT_DEVICE_ID] = "device_id", [CDP_IDENT_COOKIE_ID] = "cookie_id",
};

static int is_type_char(int ch) {
    return (ch >= 'a' && ch <= 'z') || is_digit(ch) || ch == '_' || ch == '.' || ch == '-';
}

cdp_ident_kind cdp_ident_kind_of(const char *type) {
    if (type == NULL)
        return CDP_IDENT_INVALID;
    size_t n = 0;
    for (; type[n] != '\0'; n++)
        if (n >= CDP_IDENT_MAX_TYPE || !is_type_char((unsigned char)type[n]))
            return CDP_IDENT_INVALID;
    if (n == 0)
        return CDP_IDENT_INVALID;
    for (int k = CDP_IDENT_USER_ID; k < CDP_IDENT_CUSTOM; k++)
        if (strcmp(type, k_kind_names[k]) == 0)
            return (cdp_ident_kind)k;
    return CDP_IDENT_CUSTOM;
}

const char *cdp_ident_kind_name(cdp_ident_kind k) {
    if (k < CDP_IDENT_USER_ID || k >= CDP_IDENT_CUSTOM)
        return NULL;
    return k_kind_names[k];
}

/* ------------------------------------------------------------- normalizers */

static int fail(int code, const char *reason, const char **why) {
    if (why != NULL)
        *why = reason;
    return code;
}

static int is_blocked(const cdp_ident_config *cfg, const char *s, size_t n) {
    for (size_t i = 0; i < cfg->n_blocked; i++) {
        const char *b = cfg->blocked[i];
        if (strlen(b) != n)
            continue;
        size_t j = 0;
        while (j < n && ascii_lower((unsigned char)s[j]) == b[j])
            j++;
        if (j == n)
            return 1;
    }
    return 0;
}

/* Email: lower-cased; exactly one '@', a non-empty local part, a domain with a
 * dot that neither starts nor ends it, and no whitespace or control bytes. */
static int norm_email(const char *s, size_t n, char *out, const char **why) {
    size_t at = n, n_at = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= ' ' || ch == 0x7f)
            return fail(CDP_IDENT_EEMAIL, "not a valid email", why);
        if (ch == '@') {
            at = i;
            n_at++;
        }
        out[i] = (char)ascii_lower(ch);
    }
    out[n] = '\0';
    if (n_at != 1 || at == 0)
        return fail(CDP_IDENT_EEMAIL, "not a valid email", why);
    const char *dom = out + at + 1;
    size_t dn = n - at - 1;
    const char *dot = memchr(dom, '.', dn);
    if (dn == 0 || dot == NULL || dom[0] == '.' || dom[dn - 1] == '.')
        return fail(CDP_IDENT_EEMAIL, "not a valid email", why);
    return CDP_IDENT_OK;
}

/* Collects the digits of a phone number, accepting a leading '+' and the
 * separators space . - ( ). Returns the digit count, or -1 on any other byte.
 * *plus is set when the number started with '+'. */
static int phone_digits(const char *s, size_t n, char *digits, int *plus) {
    int nd = 0;
    *plus = 0;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i];
        if (is_digit(ch))
            digits[nd++] = (char)ch;
        else if (ch == '+' && i == 0)
            *plus = 1;
        else if (ch != ' ' && ch != '.' && ch != '-' && ch != '(' && ch != ')')
            return -1;
    }
    digits[nd] = '\0';
    return nd;
}

/* Phone to E.164 ("+" then 8..15 digits, the first not 0). A "00" prefix is
 * the international prefix; any other number without '+' is national in the
 * default region: one trunk prefix is dropped and the calling code added. */
static int norm_phone(const char *s, size_t n, const cdp_ident_config *cfg, char *out,
                      const char **why) {
    char digits[CDP_IDENT_VALUE_BUFSZ];
    int plus;
    int nd = phone_digits(s, n, digits, &plus);
    if (nd < 0)
        return fail(CDP_IDENT_EPHONE, "not a valid phone number", why);
    const char *d = digits;
    const char *cc = "";
    if (!plus && nd >= 2 && d[0] == '0' && d[1] == '0') {
        d += 2;
    } else if (!plus) {
        if (cfg->region->trunk != 0 && d[0] == cfg->region->trunk)
            d++;
        cc = cfg->region->calling;
    }
    size_t total = strlen(cc) + strlen(d);
    if (total < PHONE_MIN_DIGITS || total > PHONE_MAX_DIGITS)
        return fail(CDP_IDENT_EPHONE, "not a valid phone number", why);
    out[0] = '+';
    strcpy(out + 1, cc);
    strcat(out + 1, d);
    if (out[1] == '0')
        return fail(CDP_IDENT_EPHONE, "not a valid phone number", why);
    return CDP_IDENT_OK;
}

/* ------------------------------------------------------------- entry point */

int cdp_ident_normalize(const char *type, const char *value, const cdp_ident_config *cfg,
                        char *out, size_t outlen, const char **why) {
    cdp_ident_kind kind = cdp_ident_kind_of(type);
    if (kind == CDP_IDENT_INVALID)
        return fail(CDP_IDENT_EBADTYPE, "not a valid identifier type", why);
    if (value == NULL)
        return fail(CDP_IDENT_EEMPTY, "empty", why);
    const char *s = value;
    size_t n = strlen(value);
    trim_span(&s, &n);
    if (n == 0)
        return fail(CDP_IDENT_EEMPTY, "empty", why);
    if (n > CDP_IDENT_MAX_VALUE)
        return fail(CDP_IDENT_ETOOLONG, "too long", why);
    if (is_blocked(cfg, s, n))
        return fail(CDP_IDENT_EBLOCKED, "blocked value", why);

    char buf[CDP_IDENT_VALUE_BUFSZ];
    int rc = CDP_IDENT_OK;
    if (kind == CDP_IDENT_EMAIL) {
        rc = norm_email(s, n, buf, why);
    } else if (kind == CDP_IDENT_PHONE) {
        rc = norm_phone(s, n, cfg, buf, why);
    } else {
        memcpy(buf, s, n);
        buf[n] = '\0';
    }
    if (rc != CDP_IDENT_OK)
        return rc;
    size_t len = strlen(buf);
    if (len >= outlen)
        return fail(CDP_IDENT_ENOSPACE, "output buffer too small", why);
    memcpy(out, buf, len + 1);
    return CDP_IDENT_OK;
}
