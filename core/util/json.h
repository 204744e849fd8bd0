/*
 * JSON value helpers shared by the API facade and the webhook service, so
 * both render times and optional strings the same way.
 */
#ifndef MP_UTIL_JSON_H
#define MP_UTIL_JSON_H

#include <stdint.h>

#include <jansson.h>

/* RFC 3339 string of a time in ms since the epoch; null for ms <= 0. */
json_t *mpu_json_time(int64_t ms);
/* The string, or null for NULL. */
json_t *mpu_json_str(const char *s);

#endif
