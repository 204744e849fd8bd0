/*
 * fetch: GET /users/{user}/messages/{id}/$value, the message's MIME as
 * Graph keeps it (RFC 822 bytes, not JSON). Reading it does not mark the
 * message read (providers.md §3 "MIME": UNCONFIRMED there; the driver
 * never asks for anything that changes the mailbox either way).
 */
#include "graph_driver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Outlook accepts messages up to 150 MB; the host's default bound (64 MiB)
 * is raised to that. */
#define RAW_MAX_RESPONSE ((size_t)150 << 20)

mp_status graph_fetch(mp_account *acct, const mp_message_ref *msg, mp_raw *raw_r,
                      mp_error *err)
{
    graph_account *a = graph_host->account_state(acct);
    const char *id = msg->ref != NULL ? msg->ref : msg->id;
    char *eid = graph_escape(id);
    size_t rl = strlen(eid) + 32;
    char *rest = malloc(rl);
    if (rest == NULL)
        abort();
    snprintf(rest, rl, "messages/%s/$value", eid);
    free(eid);
    char *url = graph_user_url(a, rest);
    free(rest);
    /* A 400 (a malformed id) concerns this message only, not the account. */
    graph_call c = {.method = "GET", .url = url, .max_response = RAW_MAX_RESPONSE, .raw = 1,
                    .skip_on_400 = 1};
    mp_http_response resp;
    mp_status st = graph_http_call(a, &c, "GET message $value", &resp, err);
    free(url);
    if (st == MP_RESYNC)
        st = mp_fail(err, MP_SKIP, "message %s: gone (410)", id);
    if (st != MP_OK)
        return st; /* MP_SKIP: the message is gone */
    uint8_t *data = graph_host->alloc(resp.body_len + 1);
    if (data == NULL) {
        graph_host->http_free(&resp);
        return mp_fail(err, MP_RETRY, "message %s: out of memory", id);
    }
    memcpy(data, resp.body, resp.body_len);
    data[resp.body_len] = '\0';
    raw_r->data = data;
    raw_r->len = resp.body_len;
    graph_host->http_free(&resp);
    return MP_OK;
}
