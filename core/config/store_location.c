/*
 * Where the store is, from the settings: the SQLite file in state_dir, or
 * the PostgreSQL URL kept in store.url_file. The URL may carry a password,
 * so it lives in an owner-only file like the other secrets (read with
 * mpu_read_file's checks) and is never part of a message.
 */
#include "config/config.h"

#include <stdlib.h>
#include <string.h>

#include "util/util.h"

/* One URL; a longer file is not one. */
#define URL_MAX 4096

int mp_store_location(const mp_settings *s, char **location_r, char **error_r)
{
    *location_r = NULL;
    if (s->store.backend == MP_STORE_SQLITE) {
        *location_r = mpu_asprintf("%s/mailpulse.db", s->state_dir);
        return 0;
    }
    char *text = NULL;
    size_t len = 0;
    char *err = NULL;
    if (mpu_read_file(s->store.url_file, URL_MAX, 1, &text, &len, &err) < 0) {
        *error_r = mpu_asprintf("store.url_file: %s", err);
        free(err);
        return -1;
    }
    /* One line: surrounding blanks and the final newline go. */
    size_t start = strspn(text, " \t\r\n");
    while (len > start && strchr(" \t\r\n", text[len - 1]) != NULL)
        len--;
    int ok = len > start && memchr(text + start, '\n', len - start) == NULL &&
             (strncmp(text + start, "postgresql://", 13) == 0 ||
              strncmp(text + start, "postgres://", 11) == 0);
    if (!ok) {
        *error_r = mpu_asprintf("store.url_file \"%s\" must hold one postgresql:// URL "
                                "(see libpq's connection URIs)",
                                s->store.url_file);
        mpu_secret_free(&text);
        return -1;
    }
    char *url = mpu_strndup(text + start, len - start);
    mpu_secret_free(&text);
    *location_r = url;
    return 0;
}
