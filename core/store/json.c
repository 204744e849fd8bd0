/* Small JSON helpers for event data (see store-shared.h). */
#include "store/store-shared.h"

#include <stdlib.h>
#include <string.h>

#include "util/util.h"

json_t *mps__json_string(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (max > 0 && len > max) {
        /* Back off to the start of the character the cut falls in, so a
         * multi-byte character is dropped whole. */
        len = max;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--;
    }
    json_t *str = json_stringn(s, len);
    if (str != NULL)
        return str;
    /* Drivers may hand us bytes that are not UTF-8: event data must stay
     * valid JSON, and these fields are only a preview. */
    char *copy = mpu_strndup(s, len);
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)copy[i] >= 0x80)
            copy[i] = '?';
    }
    str = json_stringn(copy, len);
    free(copy);
    return str;
}

char *mps__json_take(json_t *obj)
{
    if (obj == NULL)
        return NULL;
    char *out = NULL;
    if (json_object_size(obj) > 0) {
        char *dumped = json_dumps(obj, JSON_COMPACT);
        out = mpu_strdup(dumped);
        free(dumped);
    }
    json_decref(obj);
    return out;
}
