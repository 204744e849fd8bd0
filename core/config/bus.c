/* The optional `bus` group of mailpulsed.conf (events on NATS JetStream)
 * -> s->bus, and its token file (read separately, by the daemon only, like
 * the webhook secrets: mailpulsectl loads the settings too). */
#include "config/config_private.h"

#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define MAX_TOKEN_FILE 4096
#define MAX_STREAM_NAME 64

static const mp_config_key bus_keys[] = {
    {"nats_url", MP_CFG_STRING, NULL, 1,
     "nats:// or tls:// server address; several separated by commas"},
    {"stream", MP_CFG_STRING, "MAILPULSE", 0, "JetStream stream name, [A-Za-z0-9_-]"},
    {"token_file", MP_CFG_SECRET_FILE, NULL, 0, "file holding the NATS authentication token"},
    {"creds_file", MP_CFG_STRING, NULL, 0, "NATS credentials file (user JWT and NKey seed)"},
    {"tls_ca_file", MP_CFG_STRING, NULL, 0, "PEM CA bundle; set, the connection uses TLS"},
    {"duplicate_window", MP_CFG_INT, "120", 0,
     "seconds the stream drops a repeated Nats-Msg-Id, 1..604800"},
    {"max_pending", MP_CFG_INT, "256", 0, "publishes awaiting their ack at once, 1..65536"},
    {"ack_timeout", MP_CFG_INT, "5", 0, "seconds to wait for a publish's ack, 1..300"},
    {"retry_max", MP_CFG_INT, "30", 0, "cap of the retry backoff in seconds, 1..3600"},
    {0},
};

const mp_config_key *mpc__bus_keys(void)
{
    return bus_keys;
}

int mpc_bus_stream_valid(const char *name)
{
    size_t n = strlen(name);
    return n > 0 && n <= MAX_STREAM_NAME &&
           strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") ==
               n;
}

static size_t get_range(const mpc_node *bus, const char *key, uint32_t min, uint32_t max,
                        uint32_t *value_r, mpc_errors *errs)
{
    const mpc_node *node = mpc_get(bus, key);
    int64_t v = node != NULL ? node->i : 0;
    if (node == NULL || v < (int64_t)min || v > (int64_t)max) {
        mpc_error_add(errs, bus->file, node != NULL ? node->line : bus->line,
                      "\"bus.%s\" must be between %u and %u", key, min, max);
        return 1;
    }
    *value_r = (uint32_t)v;
    return 0;
}

/* A present key must not be empty: "" would silently mean "none". */
static size_t get_path(const mpc_node *bus, const char *key, char **value_r,
                       mpc_errors *errs)
{
    const mpc_node *node = mpc_get(bus, key);
    if (node == NULL)
        return 0;
    if (node->str == NULL || node->str[0] == '\0') {
        mpc_error_add(errs, node->file, node->line, "\"bus.%s\" must not be empty", key);
        return 1;
    }
    *value_r = mpu_strdup(node->str);
    return 0;
}

/* Every comma-separated entry names a NATS scheme: a typo such as
 * "http://" would otherwise surface only as a connection failure. */
static int url_valid(const char *url)
{
    static const char *const schemes[] = {"nats://", "tls://", "ws://", "wss://", NULL};
    if (url[0] == '\0' || strpbrk(url, " \t\r\n") != NULL)
        return 0;
    for (const char *p = url; p != NULL;) {
        int ok = 0;
        for (size_t i = 0; schemes[i] != NULL && !ok; i++)
            ok = strncmp(p, schemes[i], strlen(schemes[i])) == 0 &&
                 p[strlen(schemes[i])] != '\0' && p[strlen(schemes[i])] != ',';
        if (!ok)
            return 0;
        p = strchr(p, ',');
        if (p != NULL)
            p++;
    }
    return 1;
}

size_t mpc__bus_fill(const mpc_node *bus, mp_settings *s, mpc_errors *errs)
{
    size_t n = 0;
    s->bus.enabled = 1;
    s->bus.where = mpu_asprintf("%s:%d", bus->file, bus->line);
    const mpc_node *url = mpc_get(bus, "nats_url");
    if (!url_valid(url->str)) {
        mpc_error_add(errs, url->file, url->line,
                      "\"bus.nats_url\" must be nats://host:port (or tls://, ws://, "
                      "wss://; several separated by commas), not \"%s\"",
                      url->str);
        n++;
    }
    s->bus.nats_url = mpu_strdup(url->str);
    const mpc_node *stream = mpc_get(bus, "stream");
    if (!mpc_bus_stream_valid(stream->str)) {
        mpc_error_add(errs, stream->file, stream->line,
                      "\"bus.stream\" must be 1..64 characters of [A-Za-z0-9_-], not \"%s\"",
                      stream->str);
        n++;
    }
    s->bus.stream = mpu_strdup(stream->str);
    n += get_path(bus, "token_file", &s->bus.token_file, errs);
    n += get_path(bus, "creds_file", &s->bus.creds_file, errs);
    n += get_path(bus, "tls_ca_file", &s->bus.tls_ca_file, errs);
    if (s->bus.token_file != NULL && s->bus.creds_file != NULL) {
        mpc_error_add(errs, bus->file, mpc_get(bus, "creds_file")->line,
                      "\"bus.token_file\" and \"bus.creds_file\" exclude each other: "
                      "a NATS server authenticates a client one way");
        n++;
    }
    n += get_range(bus, "duplicate_window", 1, 7u * 24 * 3600, &s->bus.duplicate_window, errs);
    n += get_range(bus, "max_pending", 1, 65536, &s->bus.max_pending, errs);
    n += get_range(bus, "ack_timeout", 1, 300, &s->bus.ack_timeout, errs);
    n += get_range(bus, "retry_max", 1, 3600, &s->bus.retry_max, errs);
    return n;
}

void mpc__bus_free(mp_settings *s)
{
    free(s->bus.nats_url);
    free(s->bus.stream);
    free(s->bus.token_file);
    free(s->bus.creds_file);
    free(s->bus.tls_ca_file);
    free(s->bus.where);
    mpu_secret_free(&s->bus.token);
    memset(&s->bus, 0, sizeof s->bus);
}

size_t mpc_bus_read_secrets(mp_settings *s, mpc_errors *errs)
{
    if (!s->bus.enabled || s->bus.token_file == NULL || s->bus.token != NULL)
        return 0;
    char *data = NULL, *error = NULL;
    size_t len = 0;
    if (mpu_read_file(s->bus.token_file, MAX_TOKEN_FILE, 1, &data, &len, &error) < 0) {
        mpc_error_add(errs, NULL, 0, "%s: bus.token_file: %s", s->bus.where, error);
        free(error);
        return 1;
    }
    if (len > 0 && data[len - 1] == '\n')
        data[--len] = '\0';
    if (len > 0 && data[len - 1] == '\r')
        data[--len] = '\0';
    if (len == 0 || strlen(data) != len || strpbrk(data, "\r\n") != NULL) {
        mpu_secret_free(&data);
        mpc_error_add(errs, NULL, 0,
                      "%s: bus.token_file %s: the token must be one non-empty line",
                      s->bus.where, s->bus.token_file);
        return 1;
    }
    s->bus.token = data;
    return 0;
}
