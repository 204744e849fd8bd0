/* Connecting with an account's settings and keeping its capability
 * profile. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "imap_driver.h"
#include "imap_strategy.h"
#include "imap_sync.h"

static int same_text(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

/* Certificate problems are worth saying plainly: the admin has to act
 * (install a CA with ca_file, fix the server name), retrying alone may not
 * help, but the server side can be fixed without touching our config. */
static int looks_like_tls_verify(const char *error)
{
    static const char *const words[] = {"certificate", "verify", "hostname", "host name",
                                        "x509"};
    if (error == NULL)
        return 0;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcasestr(error, words[i]) != NULL)
            return 1;
    return 0;
}

/* Record what the connection shows when it differs from the stored
 * profile (or none is stored yet). Returns 1 when the profile changed. */
static int refresh_profile(imap_account *a, imap_conn *conn)
{
    const imap_caps *caps = imap_conn_caps(conn);
    uint32_t enabled = imap_conn_enabled(conn);
    int changed = 0;
    int first = 0;
    pthread_mutex_lock(&a->lock);
    if (!a->have_profile || a->caps.bits != caps->bits || a->enabled != enabled ||
        !same_text(a->caps.raw, caps->raw) ||
        !same_text(a->caps.greeting, caps->greeting)) {
        first = !a->have_profile;
        free(a->caps.raw);
        free(a->caps.greeting);
        a->caps.bits = caps->bits;
        a->caps.raw = imap_xstrdup(caps->raw);
        a->caps.greeting = imap_xstrdup(caps->greeting);
        a->enabled = enabled;
        a->have_profile = 1;
        changed = 1;
    }
    /* Mechanisms are announced before login only; keep the last seen. */
    if (caps->auth_mechs != NULL && !same_text(a->caps.auth_mechs, caps->auth_mechs)) {
        free(a->caps.auth_mechs);
        a->caps.auth_mechs = imap_xstrdup(caps->auth_mechs);
        changed = 1;
    }
    if (changed)
        a->profiled_ms = imap_host->now_ms();
    pthread_mutex_unlock(&a->lock);
    if (!changed)
        return 0;
    char *json = imap_profile_json(a);
    if (json != NULL)
        imap_host->set_profile(a->acct, json);
    free(json);
    if (!first)
        imap_host->log(imap_host->account_instance(a->acct), a->acct, MP_LOG_INFO,
                       "server capabilities changed; profile re-probed");
    return 1;
}

static mp_status connect_account(imap_account *a, imap_conn **conn_r, int defer,
                                 mp_error *err)
{
    const mp_host *h = imap_host;
    char *secret = NULL;
    size_t secret_len = 0;
    mp_status st = h->read_secret(a->cfg, a->secret_key, &secret, &secret_len, err);
    if (st != MP_OK)
        return st;
    imap_conn_opts opts = {
        .host = a->host,
        .port = a->port,
        .tls = a->tls,
        .ca_file = a->ca_file,
        .username = a->username,
        .secret = secret,
        .auth = a->auth,
        .timeout_ms = 60000,
        .enable = 1,
        .client_id = "mailpulse",
        .deadline_ms = a->deadline_ms,
        .max_memory = a->max_memory,
        .defer_settle = defer,
    };
    imap_auth_answer answer;
    char *error = NULL;
    imap_conn *conn = NULL;
    int rc = imap_conn_open(&opts, &conn, &answer, &error);
    h->free_secret(&secret);
    if (rc < 0) {
        const char *why = error != NULL ? error : "unknown error";
        if (answer.refused)
            st = imap_sync_login_fail(a, &answer, why, err);
        else if (looks_like_tls_verify(why))
            st = mp_fail(err, MP_RETRY,
                         "%s:%u: TLS certificate verification failed (check the server's "
                         "certificate or ca_file): %s",
                         a->host, (unsigned)a->port, why);
        else
            st = imap_sync_login_fail(a, NULL, why, err);
        free(error);
        imap_conn_abort(&conn);
        return st;
    }
    free(error);
    if (!defer)
        refresh_profile(a, conn);
    *conn_r = conn;
    return MP_OK;
}

mp_status imap_account_connect(imap_account *a, imap_conn **conn_r, mp_error *err)
{
    return connect_account(a, conn_r, 0, err);
}

mp_status imap_account_connect_deferred(imap_account *a, imap_conn **conn_r,
                                        mp_error *err)
{
    return connect_account(a, conn_r, 1, err);
}

mp_status imap_account_settle(imap_account *a, imap_conn **connp, mp_error *err)
{
    char *error = NULL;
    if (imap_conn_settle(*connp, &error) < 0) {
        mp_status st = imap_sync_io_fail(a, connp, "ENABLE", error, err);
        free(error);
        return st;
    }
    refresh_profile(a, *connp);
    return MP_OK;
}

/* Words of a space-separated list as a JSON array. Server text is
 * untrusted; jansson refuses invalid UTF-8, so such a word is skipped
 * rather than breaking the whole profile. */
static json_t *words_json(const char *list)
{
    json_t *arr = json_array();
    for (const char *p = list; p != NULL && *p != '\0';) {
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, " ");
        if (len > 0)
            json_array_append_new(arr, json_stringn(p, len));
        p += len;
    }
    return arr;
}

static json_t *str_json(const char *s)
{
    json_t *v = s != NULL ? json_string(s) : NULL;
    return v != NULL ? v : json_null();
}

char *imap_profile_json(const imap_account *a)
{
    static const struct {
        const char *name;
        uint32_t bit;
    } features[] = {
        {"idle", IMAP_CAP_IDLE},
        {"condstore", IMAP_CAP_CONDSTORE},
        {"qresync", IMAP_CAP_QRESYNC},
        {"enable", IMAP_CAP_ENABLE},
        {"uidplus", IMAP_CAP_UIDPLUS},
        {"move", IMAP_CAP_MOVE},
        {"esearch", IMAP_CAP_ESEARCH},
        {"special_use", IMAP_CAP_SPECIAL_USE},
        {"literal_plus", IMAP_CAP_LITERAL_PLUS},
        {"literal_minus", IMAP_CAP_LITERAL_MINUS},
        {"notify", IMAP_CAP_NOTIFY},
        {"id", IMAP_CAP_ID},
        {"gmail", IMAP_CAP_XGMEXT1},
        {"starttls", IMAP_CAP_STARTTLS},
        {"namespace", IMAP_CAP_NAMESPACE},
        {"utf8_accept", IMAP_CAP_UTF8_ACCEPT},
        {"compress_deflate", IMAP_CAP_COMPRESS_DEFLATE},
        {"objectid", IMAP_CAP_OBJECTID},
    };
    imap_account *la = (imap_account *)a; /* for the lock only */
    pthread_mutex_lock(&la->lock);
    uint32_t bits = a->caps.bits;
    json_t *feat = json_object();
    for (size_t i = 0; i < sizeof features / sizeof features[0]; i++)
        json_object_set_new(feat, features[i].name, json_boolean(bits & features[i].bit));
    json_t *enabled = json_array();
    if (a->enabled & IMAP_CAP_QRESYNC)
        json_array_append_new(enabled, json_string("QRESYNC"));
    if (a->enabled & IMAP_CAP_CONDSTORE)
        json_array_append_new(enabled, json_string("CONDSTORE"));
    json_t *o = json_object();
    json_object_set_new(o, "capabilities", words_json(a->caps.raw));
    json_object_set_new(o, "features", feat);
    json_object_set_new(o, "enabled", enabled);
    json_object_set_new(
        o, "strategy", json_string(imap_strategy_name(imap_strategy_choose(bits, a->enabled))));
    json_object_set_new(
        o, "push", json_string(imap_push_name(imap_push_choose((int)a->push_mode, bits))));
    json_object_set_new(o, "auth_mechanisms", words_json(a->caps.auth_mechs));
    json_object_set_new(o, "greeting", str_json(a->caps.greeting));
    json_object_set_new(o, "tls", json_string(a->tls == IMAP_TLS_IMPLICIT   ? "implicit"
                                              : a->tls == IMAP_TLS_STARTTLS ? "starttls"
                                                                            : "none"));
    json_object_set_new(o, "probed_ms", json_integer(a->profiled_ms));
    pthread_mutex_unlock(&la->lock);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

uint64_t imap_folder_sig(const char *name)
{
    /* FNV-1a, then a multiply so that sums of several do not cancel out. */
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *c = (const unsigned char *)name; *c != '\0'; c++)
        h = (h ^ *c) * 0x100000001b3ull;
    return (h ^ (h >> 29)) * 0xbf58476d1ce4e5b9ull;
}

int imap_account_folder_wanted(const imap_account *a, const char *name)
{
    if (a->folders == NULL || a->n_folders == 0)
        return 1;
    for (size_t i = 0; i < a->n_folders; i++) {
        if (strcmp(a->folders[i], name) == 0)
            return 1;
        if (strcasecmp(a->folders[i], "INBOX") == 0 && strcasecmp(name, "INBOX") == 0)
            return 1;
    }
    return 0;
}
