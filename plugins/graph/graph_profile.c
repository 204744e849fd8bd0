/*
 * The profile graph.so publishes with set_profile: the account's
 * non-secret setup parameters, so `mailpulsectl graph-setup` (and an admin
 * reading `mailpulsectl account`) sees what the daemon runs with, without
 * reading the plugins.d file. graph_push.c adds the subscription set and
 * the lifecycle counters to the same object; a client secret, refresh
 * token or clientState never goes in.
 */
#include "graph_driver.h"

#include <stdlib.h>

json_t *graph_profile_base(const graph_account *a)
{
    const graph_instance *gi = a->inst;
    json_t *o = json_object();
    if (o == NULL)
        abort();
    json_object_set_new(o, "tenant", json_string(gi->tenant));
    json_object_set_new(o, "client_id", json_string(gi->client_id));
    json_object_set_new(o, "auth",
                        json_string(gi->auth == GRAPH_AUTH_APP ? "app" : "delegated"));
    json_object_set_new(o, "user", json_string(a->user));
    json_object_set_new(o, "api_url", json_string(gi->api_url));
    if (gi->public_url != NULL)
        json_object_set_new(o, "public_url", json_string(gi->public_url));
    if (gi->push != NULL && gi->push->notify_url != NULL)
        json_object_set_new(o, "notification_url", json_string(gi->push->notify_url));
    return o;
}
