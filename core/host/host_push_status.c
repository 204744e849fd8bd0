/* push_status (ABI 1.1): a state enum plus text, mapped to the stored
 * push state string. Liveness comes from the enum, not a prefix. */
#include "host/host_push_status.h"

#include "util/util.h"

char *mphost_push_status_text(mp_push_state status, const char *text, int *live_r)
{
    const char *name;
    *live_r = 0;
    switch (status) {
    case MP_PUSH_STATE_STARTING:
        name = "starting";
        break;
    case MP_PUSH_STATE_LIVE:
        name = "live";
        *live_r = 1;
        break;
    case MP_PUSH_STATE_RECONNECTING:
        name = "reconnecting";
        break;
    case MP_PUSH_STATE_OFF:
        name = "off";
        break;
    case MP_PUSH_STATE_FAILED:
        name = "failed";
        break;
    default:
        name = "unknown";
        break;
    }
    if (text == NULL || *text == '\0')
        return mpu_strdup(name);
    /* Bounded: the text is the driver's. */
    return mpu_asprintf("%s: %.400s", name, text);
}
