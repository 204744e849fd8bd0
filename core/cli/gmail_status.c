/*
 * mailpulsectl gmail-status ACCOUNT: the push side of one Gmail account
 * at a glance, from GET /v1/accounts/{id}: its push state (the driver's
 * own words, e.g. "live: watch until ..."), the watch (the subscription
 * the host stores: its topic, expiry and renewal), the last push and
 * notification, the last error and the driver's profile. --json prints
 * the account object as the daemon sent it. An account of another driver
 * is refused: the fields mean something else there (`account` shows it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "commands.h"
#include "util/util.h"

#define GMAIL_DRIVER "gmail"

/* Display text of a scalar; NULL for null/absent (shown as "-"). */
static char *scalar_text(const json_t *v)
{
    if (json_is_string(v))
        return mpu_strdup(json_string_value(v));
    if (json_is_integer(v))
        return mpu_asprintf("%lld", (long long)json_integer_value(v));
    if (json_is_real(v))
        return mpu_asprintf("%g", json_real_value(v));
    if (json_is_boolean(v))
        return mpu_strdup(json_is_true(v) ? "yes" : "no");
    if (v == NULL || json_is_null(v))
        return NULL;
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* Every value goes through mpctl_sanitize: the daemon relays provider
 * text (an error message, a profile field). */
static void kv(const char *label, char *value)
{
    char *clean = mpctl_sanitize(value);
    printf("%-18s %s\n", label, clean);
    free(clean);
    free(value);
}

/* The watch expiry: Unix seconds in the subscription, 0 for never. */
static char *expiry_text(const json_t *sub)
{
    const json_t *v = json_object_get(sub, "expires_at");
    if (!json_is_integer(v))
        return NULL;
    json_int_t s = json_integer_value(v);
    if (s == 0)
        return mpu_strdup("never");
    char buf[40];
    mpu_time_rfc3339((int64_t)s * 1000, buf, sizeof buf);
    return mpu_strdup(buf);
}

static void print_status(const json_t *a)
{
    const json_t *sub = json_object_get(a, "subscription");
    kv("account:", scalar_text(json_object_get(a, "id")));
    kv("instance:", scalar_text(json_object_get(a, "instance")));
    kv("status:", scalar_text(json_object_get(a, "status")));
    char *state = scalar_text(json_object_get(a, "push_state"));
    const json_t *live = json_object_get(a, "push_live");
    kv("mode:", mpu_asprintf("%s%s", state != NULL ? state : "-",
                             json_is_true(live) ? " (push delivering)" : ""));
    free(state);
    if (json_is_object(sub)) {
        kv("topic:", scalar_text(json_object_get(sub, "provider_id")));
        kv("watch expires:", expiry_text(sub));
        kv("watch renewed:", scalar_text(json_object_get(sub, "renewed")));
        kv("last notification:", scalar_text(json_object_get(sub, "last_notification")));
    } else {
        kv("topic:", mpu_strdup("no watch"));
        kv("watch expires:", NULL);
        kv("watch renewed:", NULL);
        kv("last notification:", NULL);
    }
    kv("last push:", scalar_text(json_object_get(a, "last_push")));
    kv("last sync:", scalar_text(json_object_get(a, "last_sync")));
    kv("last error:", scalar_text(json_object_get(a, "last_error")));
    const json_t *profile = json_object_get(a, "profile");
    if (json_is_object(profile) && json_object_size(profile) > 0) {
        printf("profile:\n");
        const char *key;
        const json_t *v;
        json_object_foreach((json_t *)profile, key, v)
        {
            char *label = mpu_asprintf("  %s:", key);
            char *clean = mpctl_sanitize(label);
            kv(clean, scalar_text(v));
            free(clean);
            free(label);
        }
    } else {
        kv("profile:", scalar_text(profile));
    }
}

int mpctl_gmail_account_get(const mpctl_args *args, const mpctl_conn *conn,
                            const char *command, json_t **account_r)
{
    *account_r = NULL;
    char *id = mpctl_path_escape(args->pos[0]);
    char *path = mpu_asprintf("/v1/accounts/%s", id);
    /* Fetched quietly: with --json the object is printed only once it is
     * known to be a Gmail account. */
    mpctl_args quiet = *args;
    quiet.json = 0;
    json_t *a;
    int rc = mpctl_fetch_json(&quiet, conn, "GET", path, &a);
    free(path);
    free(id);
    if (rc != MPCTL_EXIT_OK)
        return rc;
    const char *driver = json_string_value(json_object_get(a, "driver"));
    if (driver == NULL || strcmp(driver, GMAIL_DRIVER) != 0) {
        char *acct = mpctl_sanitize(args->pos[0]);
        char *drv = mpctl_sanitize(driver);
        fprintf(stderr,
                "mailpulsectl: account '%s' uses driver '%s', not gmail; "
                "%s is for Gmail accounts (see: mailpulsectl account %s)\n",
                acct, drv, command, acct);
        free(drv);
        free(acct);
        json_decref(a);
        return MPCTL_EXIT_ERROR;
    }
    *account_r = a;
    return MPCTL_EXIT_OK;
}

int mpctl_cmd_gmail_status(const mpctl_args *args, const mpctl_conn *conn)
{
    json_t *a;
    int rc = mpctl_gmail_account_get(args, conn, "gmail-status", &a);
    if (rc != MPCTL_EXIT_OK)
        return rc;
    if (args->json) {
        json_dumpf(a, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
        fputc('\n', stdout);
    } else {
        print_status(a);
    }
    json_decref(a);
    return MPCTL_EXIT_OK;
}
