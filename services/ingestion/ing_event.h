/* ing_event: what an event means to ingestion beyond its raw fields.
 *
 * One definition of "the identifiers of an event", shared by validation
 * (which requires at least one usable one) and the pipeline (which sends
 * exactly these to identity), so that the two can never disagree. Pure. */
#ifndef ING_EVENT_H
#define ING_EVENT_H

#include <stddef.h>
#include "cdp/v1/event.pb-c.h"

/* Where an identifier of an event came from. */
typedef enum {
    ING_IDENT_FROM_USER_ID,      /* ev->user_id, type "user_id" */
    ING_IDENT_FROM_ANONYMOUS_ID, /* ev->anonymous_id, type "anonymous_id" */
    ING_IDENT_FROM_PREVIOUS_ID,  /* alias ev->previous_id, type "anonymous_id" */
    ING_IDENT_FROM_LIST,         /* ev->identifiers[index], as given */
} ing_ident_source;

typedef struct {
    const char *type;     /* borrowed from the event or a static string */
    const char *value;    /* borrowed from the event */
    ing_ident_source source;
    size_t index;         /* position in ev->identifiers for FROM_LIST */
} ing_ident_ref;

/* The number of identifiers ing_event_identifiers yields for ev. */
size_t ing_event_identifier_count(const Cdp__V1__Event *ev);

/* Writes up to cap identifiers of ev into out, in this order: user_id,
 * anonymous_id, previous_id (alias events only: the id being aliased is the
 * anonymous id the person had before), then identifiers[] as given. Empty
 * top-level strings are skipped; list entries are yielded as they are.
 * Returns the number written. The refs borrow from ev. */
size_t ing_event_identifiers(const Cdp__V1__Event *ev, ing_ident_ref *out, size_t cap);

/* Writes the field path of ref (e.g. "user_id", "identifiers[2]") after
 * `prefix` into out. Always NUL-terminates. */
void ing_ident_field(const ing_ident_ref *ref, const char *prefix, const char *member,
                     char *out, size_t outlen);

#endif
