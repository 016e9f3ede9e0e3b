/* cdp_event: names every service gives the parts of a cdp.v1.Event, so
 * that profile's counts, the pipeline's touches and segment rules agree. */
#ifndef CDP_EVENT_H
#define CDP_EVENT_H

#include "cdp/v1/event.pb-c.h"

/* "track", "identify", "page", "screen", "group", "alias", "message"; NULL
 * for EVENT_TYPE_UNSPECIFIED and unknown values. */
const char *cdp_event_type_name(Cdp__V1__EventType type);

/* The name an event is counted under: a track event's `event`, otherwise
 * its type name (NULL as above). */
const char *cdp_event_count_name(const Cdp__V1__Event *ev);

#endif
