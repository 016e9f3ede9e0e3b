/* cdp_ident: identifier validation and normalization, shared by ingestion
 * (which rejects unusable identifiers at the edge) and identity (which keys
 * the identity graph by the normalized value).
 *
 * Both services must produce byte-identical values for the same input, or the
 * graph would split one person into two: that is why this lives in common/.
 *
 *   cdp_ident_config cfg;
 *   if (cdp_ident_config_init(&cfg, "GB", NULL) != 0) ...;
 *   char out[CDP_IDENT_VALUE_BUFSZ];
 *   const char *why;
 *   if (cdp_ident_normalize("phone", "020 7946 0018", &cfg, out, sizeof out, &why) == 0)
 *       ... out is "+442079460018" ...
 *
 * Pure functions over caller-owned structs: no allocation, no global state. */
#ifndef CDP_IDENT_H
#define CDP_IDENT_H

#include <stddef.h>

/* Longest accepted value in bytes (after trimming surrounding whitespace). */
#define CDP_IDENT_MAX_VALUE 256
/* Buffer size that holds any normalized value plus its NUL. */
#define CDP_IDENT_VALUE_BUFSZ (CDP_IDENT_MAX_VALUE + 1)
/* Longest identifier type name; types match [a-z0-9_.-]{1,64}. */
#define CDP_IDENT_MAX_TYPE 64
/* Limits of the configurable blocked-value list. */
#define CDP_IDENT_MAX_BLOCKED 32
#define CDP_IDENT_MAX_BLOCKED_LEN 64

/* Environment variables the services read (docs/identity.md). */
#define CDP_IDENT_ENV_REGION "CDP_IDENTITY_DEFAULT_REGION"
#define CDP_IDENT_ENV_BLOCKED "CDP_IDENTITY_BLOCKED_VALUES"
#define CDP_IDENT_DEFAULT_REGION "US"
#define CDP_IDENT_DEFAULT_BLOCKED "null,undefined,anonymous,0,-1,none,nil"

typedef enum {
    CDP_IDENT_INVALID = -1, /* type name does not match [a-z0-9_.-]{1,64} */
    CDP_IDENT_USER_ID = 0,
    CDP_IDENT_ANONYMOUS_ID,
    CDP_IDENT_EMAIL,
    CDP_IDENT_PHONE,
    CDP_IDENT_DEVICE_ID,
    CDP_IDENT_COOKIE_ID,
    CDP_IDENT_CUSTOM, /* any other valid type name, kept as given */
} cdp_ident_kind;

/* Return codes of cdp_ident_normalize (0 is success). */
enum {
    CDP_IDENT_OK = 0,
    CDP_IDENT_EBADTYPE = -1, /* "not a valid identifier type" */
    CDP_IDENT_EEMPTY = -2,   /* "empty" */
    CDP_IDENT_ETOOLONG = -3, /* "too long" */
    CDP_IDENT_EBLOCKED = -4, /* "blocked value" */
    CDP_IDENT_EEMAIL = -5,   /* "not a valid email" */
    CDP_IDENT_EPHONE = -6,   /* "not a valid phone number" */
    CDP_IDENT_ENOSPACE = -7, /* "output buffer too small" */
};

/* One row of the built-in region table. */
typedef struct {
    char iso[3];           /* ISO 3166-1 alpha-2, upper case */
    const char *calling;   /* country calling code, digits only */
    char trunk;            /* national trunk prefix dropped before the calling
                              code is prepended ('0', '1' for NANP), or 0 */
} cdp_ident_region;

typedef struct {
    const cdp_ident_region *region; /* default region for national numbers */
    size_t n_blocked;
    char blocked[CDP_IDENT_MAX_BLOCKED][CDP_IDENT_MAX_BLOCKED_LEN + 1]; /* lower case */
} cdp_ident_config;

/* Initializes `c`. default_region is an ISO alpha-2 code (any case; NULL means
 * CDP_IDENT_DEFAULT_REGION); blocked_csv a comma-separated list of values
 * rejected case-insensitively after trimming (NULL means
 * CDP_IDENT_DEFAULT_BLOCKED; "" means none besides the empty value, which is
 * always rejected). Returns 0; -1 if the region is not in the table; -2 if the
 * blocked list has more than CDP_IDENT_MAX_BLOCKED entries or an entry longer
 * than CDP_IDENT_MAX_BLOCKED_LEN. */
int cdp_ident_config_init(cdp_ident_config *c, const char *default_region, const char *blocked_csv);

/* Initializes `c` from CDP_IDENTITY_DEFAULT_REGION and
 * CDP_IDENTITY_BLOCKED_VALUES (defaults when unset or empty). Same returns
 * as cdp_ident_config_init. */
int cdp_ident_config_from_env(cdp_ident_config *c);

/* The kind of a type name; CDP_IDENT_INVALID when the name is NULL or does not
 * match [a-z0-9_.-]{1,64}. */
cdp_ident_kind cdp_ident_kind_of(const char *type);

/* The canonical type name of a well-known kind ("user_id", ...), or NULL for
 * CDP_IDENT_CUSTOM and CDP_IDENT_INVALID. */
const char *cdp_ident_kind_name(cdp_ident_kind k);

/* Looks up a region by ISO alpha-2 code (any case). NULL when unknown. */
const cdp_ident_region *cdp_ident_region_find(const char *iso);

/* Normalizes `value` of identifier type `type` into out (NUL-terminated).
 * All values are trimmed of surrounding whitespace and checked against the
 * empty/blocked/too-long rules; email is lower-cased and checked for shape;
 * phone is converted to E.164 ("+" and 8..15 digits) using cfg's default
 * region for national numbers. Returns CDP_IDENT_OK, or a negative code with
 * *why (if why is non-NULL) set to a static human-readable reason. */
int cdp_ident_normalize(const char *type, const char *value, const cdp_ident_config *cfg,
                        char *out, size_t outlen, const char **why);

#endif
