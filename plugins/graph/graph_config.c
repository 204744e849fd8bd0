/* Host-free configuration checks (see graph_config.h). */
#include "graph_config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int graph_auth_parse(const char *s, graph_auth *auth_r)
{
    if (s == NULL || strcmp(s, "app") == 0)
        *auth_r = GRAPH_AUTH_APP;
    else if (strcmp(s, "delegated") == 0)
        *auth_r = GRAPH_AUTH_DELEGATED;
    else
        return -1;
    return 0;
}

int graph_url_check(const char *url, char **clean_r, char *why, size_t why_len)
{
    const char *rest;
    int tls;
    if (url == NULL || url[0] == '\0') {
        snprintf(why, why_len, "must not be empty");
        return -1;
    }
    if (strncasecmp(url, "https://", 8) == 0) {
        tls = 1;
        rest = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        tls = 0;
        rest = url + 7;
    } else {
        snprintf(why, why_len, "\"%s\" is not an https:// URL", url);
        return -1;
    }
    size_t auth_len = strcspn(rest, "/?#");
    if (auth_len == 0 || memchr(rest, '@', auth_len) != NULL) {
        snprintf(why, why_len, "\"%s\": no host, or user info in the URL", url);
        return -1;
    }
    if (strpbrk(rest + auth_len, "?#") != NULL) {
        snprintf(why, why_len, "\"%s\": a base URL takes no query or fragment", url);
        return -1;
    }
    char host[256];
    const char *h = rest;
    size_t hl;
    if (*h == '[') {
        const char *close = memchr(h, ']', auth_len);
        if (close == NULL) {
            snprintf(why, why_len, "\"%s\": bad IPv6 literal", url);
            return -1;
        }
        h++;
        hl = (size_t)(close - h);
    } else {
        const char *colon = memchr(h, ':', auth_len);
        hl = colon != NULL ? (size_t)(colon - h) : auth_len;
    }
    if (hl == 0 || hl >= sizeof host) {
        snprintf(why, why_len, "\"%s\": bad host", url);
        return -1;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (!tls && strcmp(host, "127.0.0.1") != 0 && strcmp(host, "::1") != 0 &&
        strcasecmp(host, "localhost") != 0) {
        snprintf(why, why_len,
                 "\"%s\": plain http is allowed only to a loopback host"
                 " (127.0.0.1, ::1, localhost); use https",
                 url);
        return -1;
    }
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    *clean_r = strndup(url, n);
    if (*clean_r == NULL)
        abort();
    return 0;
}

int graph_tenant_check(const char *tenant, char *why, size_t why_len)
{
    if (tenant == NULL || tenant[0] == '\0') {
        snprintf(why, why_len, "a tenant id or domain is required");
        return -1;
    }
    size_t n = strlen(tenant);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)tenant[i];
        if (!isalnum(c) && c != '.' && c != '-' && c != '_') {
            snprintf(why, why_len,
                     "\"%s\" is not a tenant id or domain (letters, digits, . - _)", tenant);
            return -1;
        }
    }
    if (n > 256) {
        snprintf(why, why_len, "longer than 256 characters");
        return -1;
    }
    return 0;
}

int graph_user_check(const char *user, char *why, size_t why_len)
{
    if (user == NULL || user[0] == '\0') {
        snprintf(why, why_len, "a UPN (user@domain) or object id is required");
        return -1;
    }
    size_t n = strlen(user);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)user[i];
        if (c <= ' ' || c == 0x7f || c == '/' || c == '?' || c == '#' || c == '\\') {
            snprintf(why, why_len, "\"%s\" is not a UPN or object id", user);
            return -1;
        }
    }
    if (n > 320) {
        snprintf(why, why_len, "longer than 320 characters");
        return -1;
    }
    return 0;
}
