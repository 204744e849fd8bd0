/* See json.h. */
#include "util/json.h"

#include "util/util.h"

json_t *mpu_json_time(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char buf[40];
    mpu_time_rfc3339(ms, buf, sizeof buf);
    return json_string(buf);
}

json_t *mpu_json_str(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}
