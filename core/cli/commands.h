/*
 * mailpulsectl commands. Each returns the process exit code (MPCTL_EXIT_*)
 * and has already printed any message on stderr.
 */
#ifndef MP_CLI_COMMANDS_H
#define MP_CLI_COMMANDS_H

#include <jansson.h>

#include "cli.h"
#include "client.h"

/* Read when neither -c nor $MAILPULSE_CONFIG names a configuration. */
#define MPCTL_DEFAULT_CONFIG MP_SYSCONF_DIR "/mailpulsed.conf"

/* Where the daemon is: -s / $MAILPULSE_SOCKET / the configuration's
 * http.socket, or -u URL with the token from -t or the configuration. */
int mpctl_conn_setup(const mpctl_args *args, mpctl_conn *conn_r);

/* Runs the daemon's --check-config in place of this process; returns only
 * when that cannot be started. */
int mpctl_cmd_check_config(const mpctl_args *args);

/* Every command that talks to the daemon. */
int mpctl_cmd_run(const mpctl_args *args, const mpctl_conn *conn);

/* webhooks [replay NAME [--from SEQ]] (webhooks.c). */
int mpctl_cmd_webhooks(const mpctl_args *args, const mpctl_conn *conn);

/* gmail-setup ACCOUNT (gmail_setup.c): preflight, gcloud script, live
 * test; exits 0 ready, 1 setup incomplete, 2 error. */
int mpctl_cmd_gmail_setup(const mpctl_args *args, const mpctl_conn *conn);

/* gmail-status ACCOUNT (gmail_status.c): refuses a non-Gmail account. */
int mpctl_cmd_gmail_status(const mpctl_args *args, const mpctl_conn *conn);
/* GET /v1/accounts/{args->pos[0]} of a Gmail account into *account_r
 * (json_decref it); another driver's account is refused on stderr, naming
 * `command`. Returns an exit code. */
int mpctl_gmail_account_get(const mpctl_args *args, const mpctl_conn *conn,
                            const char *command, json_t **account_r);

/* check ACCOUNT [--live] [--timeout S] (check.c; helpers in check.h). */
int mpctl_cmd_check(const mpctl_args *args, const mpctl_conn *conn);

/* graph-setup ACCOUNT (graph_setup.c): preflight, public URL round trip,
 * subscriptions, live test; exits 0 ready, 1 setup incomplete, 2 error. */
int mpctl_cmd_graph_setup(const mpctl_args *args, const mpctl_conn *conn);

/* events (events.c). */
int mpctl_cmd_events(const mpctl_args *args, const mpctl_conn *conn);

/* Shared by the commands (commands.c). */
int mpctl_report_connect_error(const mpctl_conn *conn, const char *error);
int mpctl_report_http_error(const mpctl_response *resp);
void mpctl_print_json_pretty(const char *body, size_t len);
/* Request and parse a JSON answer. Returns an exit code; on success *root_r
 * is set (and, with --json, the answer has been printed). */
int mpctl_fetch_json(const mpctl_args *args, const mpctl_conn *conn, const char *method,
                     const char *path, json_t **root_r);

#endif
