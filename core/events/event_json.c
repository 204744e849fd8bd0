/* The JSON shape of one outbox event (see events.h). Kept apart from the
 * stream state: it is pure, and it is the wire format shared by SSE, the
 * events API and the signed webhook body. */
#include "events/events.h"

#include "util/json.h"
#include "util/util.h"

json_t *mpe_event_json(const mps_event *ev)
{
    json_t *o = NULL;
    if (ev->data_json != NULL)
        o = json_loads(ev->data_json, 0, NULL);
    if (o == NULL || !json_is_object(o)) {
        json_decref(o);
        o = json_object();
    }
    char t[40];
    mpu_time_rfc3339(ev->time_ms, t, sizeof t);
    json_object_set_new(o, "seq", json_integer(ev->seq));
    json_object_set_new(o, "type", json_string(ev->type));
    json_object_set_new(o, "account", json_string(ev->account));
    json_object_set_new(o, "folder", mpu_json_str(ev->folder));
    json_object_set_new(o, "message", mpu_json_str(ev->message));
    json_object_set_new(o, "time", json_string(t));
    json_object_set_new(o, "idempotency_key", json_string(ev->idem_key));
    return o;
}
