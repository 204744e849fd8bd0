/*
 * Finding the daemon. The configuration is read only when the command line
 * and environment leave the socket or token open, so mailpulsectl works
 * for users who cannot read /etc/mailpulse.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "config/config.h"
#include "util/util.h"

#define DEFAULT_STATE_DIR "/var/lib/mailpulse"
#define MAX_TOKEN 4096

static const char *nonempty_env(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* Load the daemon settings. An explicitly named file must load; the
 * default file is skipped when this user cannot read it. */
static int load_settings(const mpctl_args *args, mp_settings **settings_r)
{
    const char *path =
        args->config != NULL ? args->config : nonempty_env("MAILPULSE_CONFIG");
    if (path == NULL && access(MPCTL_DEFAULT_CONFIG, R_OK) == 0)
        path = MPCTL_DEFAULT_CONFIG;
    mpc_errors errs = {0};
    if (mp_settings_load(path, settings_r, &errs) < 0) {
        fprintf(stderr, "mailpulsectl: cannot load the configuration %s\n",
                path != NULL ? path : "(embedded default)");
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        mpc_errors_free(&errs);
        return -1;
    }
    mpc_errors_free(&errs);
    return 0;
}

static const char *state_dir(const mp_settings *s)
{
    return s != NULL && s->state_dir != NULL && s->state_dir[0] != '\0'
               ? s->state_dir
               : DEFAULT_STATE_DIR;
}

static char *socket_from_settings(const mp_settings *s)
{
    if (s != NULL && s->http.socket != NULL && s->http.socket[0] != '\0')
        return mpu_strdup(s->http.socket);
    return mpu_asprintf("%s/mailpulsed.sock", state_dir(s));
}

static char *token_path(const mpctl_args *args, const mp_settings *s)
{
    if (args->token_file != NULL)
        return mpu_strdup(args->token_file);
    if (s != NULL && s->http.token_file != NULL && s->http.token_file[0] != '\0')
        return mpu_strdup(s->http.token_file);
    return mpu_asprintf("%s/api.token", state_dir(s));
}

/* The token goes into a header line: only visible ASCII is acceptable,
 * anything else could smuggle extra headers. */
static int read_token(const char *path, char **token_r)
{
    char *data = NULL, *error = NULL;
    size_t len = 0;
    if (mpu_read_file(path, MAX_TOKEN, 1, &data, &len, &error) < 0) {
        fprintf(stderr, "mailpulsectl: cannot read the API token: %s\n", error);
        free(error);
        return -1;
    }
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r' ||
                       data[len - 1] == ' ' || data[len - 1] == '\t'))
        data[--len] = '\0';
    int ok = len > 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)data[i] <= 0x20 || (unsigned char)data[i] >= 0x7f)
            ok = 0;
    if (!ok) {
        fprintf(stderr, "mailpulsectl: %s: not a valid API token\n", path);
        mpu_secret_free(&data);
        return -1;
    }
    *token_r = data;
    return 0;
}

static char *normalize_url(const char *url)
{
    char *out =
        strstr(url, "://") != NULL ? mpu_strdup(url) : mpu_asprintf("http://%s", url);
    size_t len = strlen(out);
    while (len > 0 && out[len - 1] == '/')
        out[--len] = '\0';
    return out;
}

int mpctl_conn_setup(const mpctl_args *args, mpctl_conn *conn_r)
{
    memset(conn_r, 0, sizeof(*conn_r));
    mp_settings *settings = NULL;
    int need_settings = args->url != NULL ? args->token_file == NULL
                                          : args->socket == NULL &&
                                                nonempty_env("MAILPULSE_SOCKET") == NULL;
    if (need_settings && load_settings(args, &settings) < 0)
        return MPCTL_EXIT_USAGE;

    int rc = MPCTL_EXIT_OK;
    if (args->url != NULL) {
        conn_r->base_url = normalize_url(args->url);
        char *path = token_path(args, settings);
        if (read_token(path, &conn_r->token) < 0)
            rc = MPCTL_EXIT_USAGE;
        free(path);
    } else {
        conn_r->base_url = mpu_strdup("http://localhost");
        if (args->socket != NULL)
            conn_r->socket_path = mpu_strdup(args->socket);
        else if (nonempty_env("MAILPULSE_SOCKET") != NULL)
            conn_r->socket_path = mpu_strdup(nonempty_env("MAILPULSE_SOCKET"));
        else
            conn_r->socket_path = socket_from_settings(settings);
    }
    mp_settings_free(&settings);
    if (rc != MPCTL_EXIT_OK)
        mpctl_conn_clear(conn_r);
    return rc;
}
