/* Test-only controls of the daemon (debug.clock_control), in a file of
 * their own so they stay apart from the data API. */
#include "daemon/api.h"

#include <stdlib.h>

#include "daemon/daemon.h"
#include "util/log.h"
#include "util/util.h"

json_t *mpd_api_debug_clock(mpd *d, const uint8_t *body, size_t len, int *status_r,
                            char **error_r)
{
    if (!d->settings->debug.clock_control) {
        *status_r = 404;
        *error_r = mpu_strdup("not found");
        return NULL;
    }
    json_error_t jerr;
    json_t *in = body != NULL ? json_loadb((const char *)body, len, 0, &jerr) : NULL;
    json_t *v = json_is_object(in) ? json_object_get(in, "offset_ms") : NULL;
    if (!json_is_integer(v)) {
        json_decref(in);
        *status_r = 400;
        *error_r = mpu_strdup("expected {\"offset_ms\": integer}");
        return NULL;
    }
    int64_t offset = (int64_t)json_integer_value(v);
    json_decref(in);
    mpu_clock_set_offset_ms(offset);
    mpu_warn("debug", "wall clock shifted by %lld ms", (long long)offset);
    char now[40];
    mpu_time_rfc3339(mpu_now_ms(), now, sizeof now);
    return json_pack("{s:I, s:s}", "offset_ms", (json_int_t)offset, "now", now);
}
