/* idn_request: validation and normalization of a ResolveRequest (see
 * idn_request.h). */
#include "idn_request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void set_error(idn_request *r, const char *fmt, size_t i, const char *why) {
    if (r->error[0] == '\0')
        snprintf(r->error, sizeof r->error, fmt, i, why);
}

static int is_duplicate(const idn_request *r, const char *type, const char *value) {
    for (size_t k = 0; k < r->n; k++)
        if (strcmp(r->ids[k].type, type) == 0 && strcmp(r->ids[k].value, value) == 0)
            return 1;
    return 0;
}

/* Normalizes identifier i of req: kept, dropped or invalid. Returns 0, or -1
 * on allocation failure. */
static int prepare_one(const cdp_ident_config *cfg, const Cdp__V1__Identifier *id, size_t i,
                       idn_request *r) {
    char norm[CDP_IDENT_VALUE_BUFSZ];
    const char *why = NULL;
    const char *type = id && id->type ? id->type : "";
    int rc = cdp_ident_normalize(type, id && id->value ? id->value : "", cfg, norm, sizeof norm,
                                 &why);
    if (rc != CDP_IDENT_OK) {
        int invalid = rc != CDP_IDENT_EEMPTY && rc != CDP_IDENT_EBLOCKED;
        r->dropped[r->n_dropped++] = (idn_req_drop){i, why, invalid};
        if (invalid)
            set_error(r, rc == CDP_IDENT_EBADTYPE ? "identifiers[%zu].type: %s"
                                                  : "identifiers[%zu].value: %s",
                      i, why);
        return 0;
    }
    if (is_duplicate(r, type, norm))
        return 0;
    char *copy = strdup(norm);
    if (copy == NULL)
        return -1;
    r->norm[r->n] = copy;
    r->ids[r->n] = (idn_ident){type, copy};
    r->src[r->n++] = i;
    return 0;
}

/* Allocates the arrays for cap identifiers in one block. Returns 0 or -1. */
static int alloc_arrays(idn_request *r, size_t cap) {
    size_t ids = cap * sizeof *r->ids, norm = cap * sizeof *r->norm, src = cap * sizeof *r->src;
    char *b = malloc(ids + norm + src + cap * sizeof *r->dropped);
    if (b == NULL)
        return -1;
    r->block = b;
    r->ids = (idn_ident *)(void *)b;
    r->norm = (char **)(void *)(b + ids);
    r->src = (size_t *)(void *)(b + ids + norm);
    r->dropped = (idn_req_drop *)(void *)(b + ids + norm + src);
    return 0;
}

int idn_request_prepare(const cdp_ident_config *cfg, const Cdp__V1__ResolveRequest *req,
                        idn_request *out) {
    memset(out, 0, sizeof *out);
    out->message_id = req->message_id ? req->message_id : "";
    out->deliver = req->deliver_merges ? 1 : 0;
    if (strlen(out->message_id) > IDN_MAX_MESSAGE_ID) {
        snprintf(out->error, sizeof out->error, "message_id: too long (max %d bytes)",
                 IDN_MAX_MESSAGE_ID);
        return IDN_REQ_UNUSABLE;
    }
    if (req->n_identifiers == 0) {
        snprintf(out->error, sizeof out->error, "identifiers: at least one is required");
        return IDN_REQ_UNUSABLE;
    }
    if (req->n_identifiers > IDN_MAX_IDENTIFIERS) {
        snprintf(out->error, sizeof out->error, "identifiers: at most %d are allowed",
                 IDN_MAX_IDENTIFIERS);
        return IDN_REQ_UNUSABLE;
    }
    if (alloc_arrays(out, req->n_identifiers) != 0)
        return -1;
    for (size_t i = 0; i < req->n_identifiers; i++)
        if (prepare_one(cfg, req->identifiers[i], i, out) != 0)
            return -1;
    if (out->n == 0) {
        if (out->error[0] == '\0')
            snprintf(out->error, sizeof out->error,
                     "identifiers: no usable identifier (all empty or blocked)");
        return IDN_REQ_UNUSABLE;
    }
    return out->error[0] != '\0' ? IDN_REQ_INVALID : IDN_REQ_OK;
}

void idn_request_clear(idn_request *r) {
    for (size_t i = 0; i < r->n; i++)
        free(r->norm[i]);
    free(r->block);
    r->block = NULL;
    r->ids = NULL;
    r->norm = NULL;
    r->src = NULL;
    r->dropped = NULL;
    r->n = r->n_dropped = 0;
}
