/* The NATS side of the relay: connection options and the stream setup
 * (contract in bus_private.h).
 *
 * libnats is used with its own threads, not with the libevent adapter:
 * the stream setup and the connection are blocking calls that may never
 * run on the loop thread, and the relay has a thread of its own for them
 * anyway, so a second event loop integration would add nothing. */
#include "bus/bus_private.h"

#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define CONNECT_TIMEOUT_MS 2000
#define RECONNECT_WAIT_MS 1000

char *mpb_nats_error(const char *what, natsStatus s, jsErrCode jerr)
{
    natsStatus last = NATS_OK;
    const char *detail = nats_GetLastError(&last);
    const char *text = natsStatus_GetText(s);
    int extra = detail != NULL && *detail != '\0' && last == s && strcmp(detail, text) != 0;
    if (jerr != 0)
        return mpu_asprintf("%s: %s (JetStream error %d)%s%s", what, text, (int)jerr,
                            extra ? ": " : "", extra ? detail : "");
    return mpu_asprintf("%s: %s%s%s", what, text, extra ? ": " : "", extra ? detail : "");
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    const mpb_nats_hooks *h = closure;
    h->conn_event(h->arg, MPB_CONN_DISCONNECTED);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    const mpb_nats_hooks *h = closure;
    h->conn_event(h->arg, MPB_CONN_RECONNECTED);
}

static void on_closed(natsConnection *nc, void *closure)
{
    (void)nc;
    const mpb_nats_hooks *h = closure;
    h->conn_event(h->arg, MPB_CONN_CLOSED);
}

static natsStatus options(const mpb_conf *c, const mpb_nats_hooks *hooks, natsOptions **o_r)
{
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    void *h = (void *)hooks;
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, c->url);
    if (s == NATS_OK)
        s = natsOptions_SetName(o, "mailpulsed");
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, CONNECT_TIMEOUT_MS);
    /* Once connected, libnats keeps reconnecting on its own (forever):
     * the relay only waits for it. */
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(o, RECONNECT_WAIT_MS);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(o, on_disconnected, h);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(o, on_reconnected, h);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(o, on_closed, h);
    if (s == NATS_OK && c->token != NULL)
        s = natsOptions_SetToken(o, c->token);
    if (s == NATS_OK && c->creds_file != NULL)
        s = natsOptions_SetUserCredentialsFromFiles(o, c->creds_file, NULL);
    if (s == NATS_OK && c->tls_ca_file != NULL) {
        s = natsOptions_SetSecure(o, true);
        if (s == NATS_OK)
            s = natsOptions_LoadCATrustedCertificates(o, c->tls_ca_file);
    }
    if (s != NATS_OK) {
        natsOptions_Destroy(o);
        return s;
    }
    *o_r = o;
    return NATS_OK;
}

int mpb_nats_connect(const mpb_conf *c, const mpb_nats_hooks *hooks, natsConnection **nc_r,
                     jsCtx **js_r, char **error_r)
{
    natsOptions *o = NULL;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsStatus s = options(c, hooks, &o);
    if (s != NATS_OK) {
        *error_r = mpb_nats_error("NATS options", s, 0);
        return -1;
    }
    s = natsConnection_Connect(&nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        *error_r = mpb_nats_error("cannot connect", s, 0);
        return -1;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = c->ack_timeout_ms;
    jo.PublishAsync.MaxPending = c->max_pending;
    jo.PublishAsync.AckHandler = hooks->ack;
    jo.PublishAsync.AckHandlerClosure = hooks->arg;
    s = natsConnection_JetStream(&js, nc, &jo);
    if (s != NATS_OK) {
        *error_r = mpb_nats_error("JetStream context", s, 0);
        natsConnection_Destroy(nc);
        return -1;
    }
    *nc_r = nc;
    *js_r = js;
    return 0;
}

void mpb_nats_close(natsConnection **nc, jsCtx **js)
{
    if (js != NULL && *js != NULL) {
        jsCtx_Destroy(*js);
        *js = NULL;
    }
    if (nc != NULL && *nc != NULL) {
        natsConnection_Close(*nc);
        natsConnection_Destroy(*nc);
        *nc = NULL;
    }
}

static const char *storage_name(jsStorageType t)
{
    return t == js_FileStorage ? "file" : "memory";
}

/* What differs between the existing stream and the relay's needs: its
 * subjects must include ours, storage must be file (a memory stream loses
 * every event on a server restart) and the duplicate window ours (dedup
 * after a crash depends on it). Other settings (limits, replicas) are the
 * operator's. NULL when it fits. */
static char *differences(const jsStreamConfig *have, const mpb_conf *c)
{
    char *out = NULL;
    int subjects = 0;
    for (int i = 0; i < have->SubjectsLen; i++)
        subjects |= have->Subjects[i] != NULL &&
                    strcmp(have->Subjects[i], MPB_STREAM_SUBJECTS) == 0;
    if (!subjects)
        out = mpu_asprintf("its subjects do not include \"%s\"", MPB_STREAM_SUBJECTS);
    if (have->Storage != js_FileStorage) {
        char *next = mpu_asprintf("%s%sstorage is %s, not file", out ? out : "",
                                  out ? "; " : "", storage_name(have->Storage));
        free(out);
        out = next;
    }
    if (have->Duplicates != c->duplicate_window_ns) {
        char *next = mpu_asprintf(
            "%s%sduplicate window is %lld ms, not %lld ms (bus.duplicate_window)",
            out ? out : "", out ? "; " : "", (long long)(have->Duplicates / 1000000),
            (long long)(c->duplicate_window_ns / 1000000));
        free(out);
        out = next;
    }
    return out;
}

int mpb_stream_ensure(jsCtx *js, const mpb_conf *c, char **error_r)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, js, c->stream, NULL, &jerr);
    if (s == NATS_OK) {
        char *diff = differences(si->Config, c);
        jsStreamInfo_Destroy(si);
        if (diff == NULL)
            return 0;
        *error_r = mpu_asprintf("stream \"%s\" exists with another configuration: %s; "
                                "mailpulse leaves it unchanged (fix the stream or the "
                                "bus settings)",
                                c->stream, diff);
        free(diff);
        return 1;
    }
    if (s != NATS_NOT_FOUND) {
        *error_r = mpb_nats_error("stream info", s, jerr);
        return -1;
    }
    const char *subjects[] = {MPB_STREAM_SUBJECTS};
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = c->stream;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Duplicates = c->duplicate_window_ns;
    jerr = 0;
    s = js_AddStream(&si, js, &sc, NULL, &jerr);
    if (s != NATS_OK) {
        /* Another node may have created it meanwhile: the next check
         * compares it. */
        *error_r = mpb_nats_error("cannot create the stream", s, jerr);
        return -1;
    }
    jsStreamInfo_Destroy(si);
    return 0;
}
