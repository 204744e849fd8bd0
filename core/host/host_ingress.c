/* Webhook ingress: a POST /push/<instance> handed to the driver's
 * push_verify, which must verify the request before it parses anything,
 * record hints with host->push_hint and may choose the answer. The HTTP
 * layer routes and bounds the request; this file turns the driver's
 * verdict into the answer, so every webhook driver answers alike. */
#include "host/host_private.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "util/log.h"
#include "util/util.h"

static void answer_error(int status, const char *msg, mphost_push_answer *a)
{
    json_t *o = json_pack("{s:s}", "error", msg);
    a->status = status;
    a->content_type = mpu_strdup("application/json");
    a->body = json_dumps(o, JSON_COMPACT);
    a->len = a->body != NULL ? strlen(a->body) : 0;
    json_decref(o);
}

void mphost_push_deliver(mp_instance *inst, const char *subpath, const char *query,
                         mphost_header_fn header, void *header_ctx, const uint8_t *body,
                         size_t len, mphost_push_answer *answer_r)
{
    memset(answer_r, 0, sizeof *answer_r);
    if (inst == NULL || inst->desc == NULL || !inst->initialized ||
        inst->desc->push_kind != MP_PUSH_WEBHOOK || inst->desc->push_verify == NULL) {
        if (inst != NULL && inst->env != NULL)
            inst->env->push_counted(inst->env->owner, MPHOST_PUSH_REJECTED);
        answer_error(404, "no webhook receiver here", answer_r);
        return;
    }
    mphost_push_private priv = {header, header_ctx};
    mp_push_request req = {subpath ? subpath : "", query ? query : "", body, len, &priv};
    struct mp_push_reply reply;
    memset(&reply, 0, sizeof reply);
    mp_error err;
    memset(&err, 0, sizeof err);
    mp_status st = inst->desc->push_verify(inst, &req, &reply, &err);
    mphost_call_end();
    /* A request for no account of ours is answered like an accepted one
     * (the sender must not redeliver it forever) but counted apart. */
    int accepted = st == MP_OK || st == MP_SKIP;
    inst->env->push_counted(inst->env->owner, st == MP_OK    ? MPHOST_PUSH_ACCEPTED
                                              : st == MP_SKIP ? MPHOST_PUSH_IGNORED
                                                              : MPHOST_PUSH_REJECTED);
    if (!accepted)
        mpu_info(inst->name, "webhook rejected: %s", err.text[0] ? err.text : "no reason");
    if (reply.set && (accepted || reply.status >= 400)) {
        answer_r->status = reply.status;
        answer_r->content_type = reply.content_type;
        answer_r->body = reply.body;
        answer_r->len = reply.len;
        return;
    }
    free(reply.content_type);
    free(reply.body);
    if (accepted) {
        answer_r->status = 204;
        return;
    }
    /* A verifier that refused without choosing an answer gets a 400; a
     * transient failure (could not persist the hint) asks for redelivery. */
    answer_error(st == MP_RETRY ? 503 : 400, err.text[0] ? err.text : "rejected", answer_r);
}
