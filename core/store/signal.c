/* Sending the cluster's signals (store/signal.h), inside the caller's
 * transaction. The payload is a small JSON object; PostgreSQL caps it at
 * 8000 bytes, and an account id or folder name that would not fit is not
 * sent at all: the holder still finds the stored hint at its next sync or
 * reconnect, it only learns of it later. */
#include "store/store-private.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "store/fence.h"
#include "store/signal.h"
#include "util/util.h"

/* PostgreSQL refuses a payload of 8000 bytes or more. */
#define PAYLOAD_MAX 7999

static const char *channel_of(mps_signal_kind kind)
{
    return kind == MPS_SIGNAL_PUSH      ? MPS__SIGNAL_PUSH_CHANNEL
           : kind == MPS_SIGNAL_STANDBY ? MPS__SIGNAL_STANDBY_CHANNEL
                                        : MPS__SIGNAL_EVENTS_CHANNEL;
}

int mps__signal(mps_store *s, mps_signal_kind kind, const char *account, const char *folder,
                char **error_r)
{
    if (mps__dialect_of(s) != MPS__POSTGRESQL)
        return 0;
    char *from = mps_fence_owner();
    /* Absent keys, not nulls, for what is not there. */
    json_t *o = json_object();
    if (account != NULL)
        json_object_set_new(o, "account", json_string(account));
    if (folder != NULL)
        json_object_set_new(o, "folder", json_string(folder));
    if (from != NULL)
        json_object_set_new(o, "from", json_string(from));
    free(from);
    char *payload = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (payload == NULL || strlen(payload) > PAYLOAD_MAX) {
        free(payload);
        return 0;
    }
    mps__stmt *st;
    int rc = mps__prepare(s, "SELECT pg_notify(:channel, :payload)", &st, error_r);
    if (rc == 0) {
        mps__bind_text(st, ":channel", channel_of(kind));
        mps__bind_text(st, ":payload", payload);
        rc = mps__step_row(s, st, error_r, "store: signal the other nodes");
        if (rc > 0)
            rc = 0;
        mps__finish(s, st);
    }
    free(payload);
    return rc < 0 ? -1 : 0;
}

void mps_signals_free(mps_signal *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].account);
        free(v[i].folder);
        free(v[i].from);
    }
    free(v);
}

int mps__signal_parse(const char *channel, const char *payload, mps_signal *sig_r)
{
    memset(sig_r, 0, sizeof *sig_r);
    if (strcmp(channel, MPS__SIGNAL_PUSH_CHANNEL) == 0)
        sig_r->kind = MPS_SIGNAL_PUSH;
    else if (strcmp(channel, MPS__SIGNAL_STANDBY_CHANNEL) == 0)
        sig_r->kind = MPS_SIGNAL_STANDBY;
    else if (strcmp(channel, MPS__SIGNAL_EVENTS_CHANNEL) == 0)
        sig_r->kind = MPS_SIGNAL_EVENTS;
    else
        return -1;
    json_t *o = json_loads(payload, JSON_REJECT_DUPLICATES, NULL);
    const char *account = NULL, *folder = NULL, *from = NULL;
    if (o == NULL ||
        json_unpack(o, "{s?s, s?s, s?s}", "account", &account, "folder", &folder, "from",
                    &from) != 0 ||
        (sig_r->kind != MPS_SIGNAL_EVENTS && (account == NULL || account[0] == '\0'))) {
        json_decref(o);
        return -1;
    }
    sig_r->account = account != NULL ? mpu_strdup(account) : NULL;
    sig_r->folder = folder != NULL ? mpu_strdup(folder) : NULL;
    sig_r->from = from != NULL ? mpu_strdup(from) : NULL;
    json_decref(o);
    return 0;
}
