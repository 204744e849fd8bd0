/* The receiving end of the cluster's signals (store/signal.h): one libpq
 * connection that LISTENs on the three channels. The caller waits on its
 * socket and reads; libpq buffers what arrives, PQconsumeInput never
 * blocks on a readable socket, and a closed socket fails it. */
#include "store/store-private.h"

#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "util/util.h"

struct mps_listener {
    PGconn *conn;
};

/* libpq's last error, first line, for *error_r (it never holds the
 * connection string). */
static void conn_error(PGconn *c, const char *what, char **error_r)
{
    const char *msg = c != NULL ? PQerrorMessage(c) : "out of memory";
    size_t len = strcspn(msg, "\n");
    mps__error(error_r, "%s: %.*s", what, (int)len, msg);
}

static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

mps_listener *mps_listener_open(const char *conninfo, const char *owner, char **error_r)
{
    /* The connection only listens: a server that went away without a
     * word (a partition, a dead host) is noticed by TCP keepalives within
     * about 25 s instead of the system's two hours, and then the caller
     * connects again and catches up. Given before the URL, which may set
     * its own; application_name after it, which wins. */
    const char *keys[] = {"connect_timeout",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "dbname",
                          owner != NULL ? "application_name" : NULL,
                          NULL};
    const char *values[] = {"10", "10", "5", "3", conninfo, owner, NULL};
    PGconn *c = PQconnectdbParams(keys, values, 1);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        conn_error(c, "signals: cannot connect to PostgreSQL", error_r);
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, ignore_notice, NULL);
    PGresult *r = PQexec(c, "LISTEN " MPS__SIGNAL_PUSH_CHANNEL
                            "; LISTEN " MPS__SIGNAL_STANDBY_CHANNEL
                            "; LISTEN " MPS__SIGNAL_EVENTS_CHANNEL);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        conn_error(c, "signals: LISTEN", error_r);
        PQfinish(c);
        return NULL;
    }
    mps_listener *l = mpu_calloc(1, sizeof *l);
    l->conn = c;
    return l;
}

void mps_listener_close(mps_listener *l)
{
    if (l == NULL)
        return;
    PQfinish(l->conn);
    free(l);
}

int mps_listener_fd(const mps_listener *l)
{
    return PQsocket(l->conn);
}

int mps_listener_read(mps_listener *l, mps_signal **v_r, size_t *n_r, char **error_r)
{
    *v_r = NULL;
    *n_r = 0;
    int alive = PQconsumeInput(l->conn) == 1 && PQstatus(l->conn) == CONNECTION_OK;
    size_t cap = 0;
    PGnotify *nt;
    while ((nt = PQnotifies(l->conn)) != NULL) {
        mps_signal sig;
        if (mps__signal_parse(nt->relname, nt->extra, &sig) == 0) {
            if (*n_r == cap) {
                cap = cap ? cap * 2 : 8;
                *v_r = mpu_realloc(*v_r, cap * sizeof **v_r);
            }
            (*v_r)[(*n_r)++] = sig;
        }
        PQfreemem(nt);
    }
    if (!alive) {
        conn_error(l->conn, "signals: connection lost", error_r);
        return -1;
    }
    return 0;
}
