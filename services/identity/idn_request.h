/* idn_request: validation and normalization of one ResolveRequest (pure).
 *
 * Every identifier is normalized with cdp_ident. Empty and blocked values
 * are dropped (reported in ResolveResponse.dropped, never an error); invalid
 * ones (bad type, malformed email or phone, too long) make the request
 * invalid: Resolve answers INVALID_ARGUMENT naming the first one, while
 * ResolveBatch drops them and resolves the rest, so that one bad event does
 * not fail a whole batch. Duplicates after normalization collapse into
 * their first occurrence. */
#ifndef IDN_REQUEST_H
#define IDN_REQUEST_H

#include <stddef.h>

#include "cdp/v1/identity.pb-c.h"
#include "cdp_ident.h"
#include "idn_rules.h"

/* Longest message id accepted (ingestion accepts 128 bytes). */
#define IDN_MAX_MESSAGE_ID 256
#define IDN_FIELD_ERR_LEN 160

typedef enum {
    IDN_REQ_OK = 0,     /* at least one usable identifier */
    IDN_REQ_INVALID,    /* see error; usable identifiers may remain */
    IDN_REQ_UNUSABLE,   /* nothing to resolve (see error) */
} idn_req_status;

typedef struct {
    size_t src;         /* index in the request's identifiers */
    const char *reason; /* static text */
    int invalid;        /* 1: malformed; 0: empty or blocked */
} idn_req_drop;

/* The arrays have room for the request's identifiers only (a batch holds
 * up to 1000 requests, most with a few identifiers): one block, owned. */
typedef struct {
    size_t n;                          /* usable, distinct, normalized */
    idn_ident *ids;
    char **norm;                       /* owned storage of ids[].value */
    size_t *src;
    size_t n_dropped;
    idn_req_drop *dropped;
    const char *message_id;            /* borrowed from the request */
    int deliver;                       /* deliver_merges: pipeline request */
    char error[IDN_FIELD_ERR_LEN];     /* "identifiers[1].value: not a valid email" */
    void *block;                       /* the arrays' storage */
} idn_request;

/* Prepares req into out (which the caller clears with idn_request_clear
 * whatever the result). Returns an idn_req_status, with out->error naming
 * the field relative to the request ("identifiers[1].value: ...",
 * "message_id: ...") unless IDN_REQ_OK; or -1 on allocation failure. */
int idn_request_prepare(const cdp_ident_config *cfg, const Cdp__V1__ResolveRequest *req,
                        idn_request *out);
void idn_request_clear(idn_request *r);

#endif
