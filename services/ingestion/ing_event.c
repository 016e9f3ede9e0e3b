/* ing_event: the identifiers of an event (see ing_event.h). */
#include "ing_event.h"

#include <stdio.h>

static const char ing__type_user_id[] = "user_id";
static const char ing__type_anonymous_id[] = "anonymous_id";

static int ing__nonempty(const char *s)
{
    return s != NULL && s[0] != '\0';
}

static int ing__has_previous_id(const Cdp__V1__Event *ev)
{
    return ev->type == CDP__V1__EVENT_TYPE__EVENT_TYPE_ALIAS && ing__nonempty(ev->previous_id);
}

size_t ing_event_identifier_count(const Cdp__V1__Event *ev)
{
    return (size_t)ing__nonempty(ev->user_id) + (size_t)ing__nonempty(ev->anonymous_id) +
           (size_t)ing__has_previous_id(ev) + ev->n_identifiers;
}

static void ing__put(ing_ident_ref *out, size_t cap, size_t *n, const char *type,
                     const char *value, ing_ident_source source, size_t index)
{
    if (*n >= cap)
        return;
    out[*n].type = type;
    out[*n].value = value;
    out[*n].source = source;
    out[*n].index = index;
    (*n)++;
}

size_t ing_event_identifiers(const Cdp__V1__Event *ev, ing_ident_ref *out, size_t cap)
{
    size_t n = 0;
    if (ing__nonempty(ev->user_id))
        ing__put(out, cap, &n, ing__type_user_id, ev->user_id, ING_IDENT_FROM_USER_ID, 0);
    if (ing__nonempty(ev->anonymous_id))
        ing__put(out, cap, &n, ing__type_anonymous_id, ev->anonymous_id,
                 ING_IDENT_FROM_ANONYMOUS_ID, 0);
    if (ing__has_previous_id(ev))
        ing__put(out, cap, &n, ing__type_anonymous_id, ev->previous_id,
                 ING_IDENT_FROM_PREVIOUS_ID, 0);
    for (size_t i = 0; i < ev->n_identifiers; i++) {
        const Cdp__V1__Identifier *id = ev->identifiers[i];
        ing__put(out, cap, &n, id ? id->type : "", id ? id->value : "", ING_IDENT_FROM_LIST, i);
    }
    return n;
}

void ing_ident_field(const ing_ident_ref *ref, const char *prefix, const char *member,
                     char *out, size_t outlen)
{
    switch (ref->source) {
    case ING_IDENT_FROM_USER_ID:
        snprintf(out, outlen, "%suser_id", prefix);
        break;
    case ING_IDENT_FROM_ANONYMOUS_ID:
        snprintf(out, outlen, "%sanonymous_id", prefix);
        break;
    case ING_IDENT_FROM_PREVIOUS_ID:
        snprintf(out, outlen, "%sprevious_id", prefix);
        break;
    case ING_IDENT_FROM_LIST:
    default:
        snprintf(out, outlen, "%sidentifiers[%zu]%s%s", prefix, ref->index,
                 member && member[0] ? "." : "", member ? member : "");
        break;
    }
}
