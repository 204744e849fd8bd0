/*
 * graph_config: checks of graph.so's configuration values that need no
 * host. Each returns 0 or -1 with a reason in `why` naming only the key's
 * own value (never a secret).
 */
#ifndef GRAPH_CONFIG_H
#define GRAPH_CONFIG_H

#include <stddef.h>

typedef enum graph_auth {
    GRAPH_AUTH_APP = 0,       /* client credentials, application permission */
    GRAPH_AUTH_DELEGATED = 1, /* a user's refresh token                     */
} graph_auth;

/* App-only tokens ask for the app's granted permissions; delegated ones
 * for read access and a refresh token (providers.md §3 "OAuth refresh"). */
#define GRAPH_SCOPE_APP "https://graph.microsoft.com/.default"
#define GRAPH_SCOPE_DELEGATED "offline_access https://graph.microsoft.com/Mail.Read"

/* "app" | "delegated" (NULL: app). */
int graph_auth_parse(const char *s, graph_auth *auth_r);

/* A base URL: https://, or http:// to a loopback host (127.0.0.1, ::1,
 * localhost) for tests and local stand-ins; no userinfo, query or
 * fragment. *clean_r (malloc'd) is the URL without trailing '/'. */
int graph_url_check(const char *url, char **clean_r, char *why, size_t why_len);

/* A tenant (GUID, domain, or common/organizations/consumers): letters,
 * digits, '.', '-' and '_' only, since it becomes a path segment. */
int graph_tenant_check(const char *tenant, char *why, size_t why_len);

/* A mailbox: a UPN (user@domain) or an object id, printable, no '/', '?',
 * '#' or space (it becomes a path segment; it is escaped as well). */
int graph_user_check(const char *user, char *why, size_t why_len);

#endif /* GRAPH_CONFIG_H */
