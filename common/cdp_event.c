/* cdp_event: see cdp_event.h. */
#include "cdp_event.h"

const char *cdp_event_type_name(Cdp__V1__EventType type)
{
    switch (type) {
    case CDP__V1__EVENT_TYPE__EVENT_TYPE_TRACK: return "track";
    case CDP__V1__EVENT_TYPE__EVENT_TYPE_IDENTIFY: return "identify";
    case CDP__V1__EVENT_TYPE__EVENT_TYPE_PAGE: return "page";
    case CDP__V1__EVENT_TYPE__EVENT_TYPE_SCREEN: return "screen";
    case CDP__V1__EVENT_TYPE__EVENT_TYPE_GROUP: return "group";
    case CDP__V1__EVENT_TYPE__EVENT_TYPE_ALIAS: return "alias";
    case CDP__V1__EVENT_TYPE__EVENT_TYPE_MESSAGE: return "message";
    default: return NULL;
    }
}

const char *cdp_event_count_name(const Cdp__V1__Event *ev)
{
    return ev->type == CDP__V1__EVENT_TYPE__EVENT_TYPE_TRACK ? ev->event
                                                             : cdp_event_type_name(ev->type);
}
