/* Host-free configuration checks (see gmail_config.h). */
#include "gmail_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int gmail_url_check(const char *url, char **path_r, char *why, size_t why_len)
{
    const char *rest;
    int tls;
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
    /* The host without its port; an IPv6 literal keeps its brackets off. */
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
    if (path_r != NULL) {
        const char *p = rest + auth_len;
        size_t pl = strlen(p);
        while (pl > 0 && p[pl - 1] == '/')
            pl--;
        *path_r = strndup(p, pl);
        if (*path_r == NULL)
            abort();
    }
    return 0;
}

int gmail_push_mode_parse(const char *s, gmail_push_mode *mode_r)
{
    if (s == NULL || strcmp(s, "off") == 0)
        *mode_r = GMAIL_PUSH_OFF;
    else if (strcmp(s, "pubsub-push") == 0)
        *mode_r = GMAIL_PUSH_PUBSUB_PUSH;
    else if (strcmp(s, "pubsub-pull") == 0)
        *mode_r = GMAIL_PUSH_PUBSUB_PULL;
    else
        return -1;
    return 0;
}

/* One path segment: non-empty, no '/', printable. */
static const char *segment(const char *p)
{
    const char *q = p;
    while (*q != '\0' && *q != '/' && (unsigned char)*q > ' ' && (unsigned char)*q < 0x7f)
        q++;
    return q == p ? NULL : q;
}

int gmail_pubsub_name_check(const char *name, const char *kind)
{
    if (name == NULL || strncmp(name, "projects/", 9) != 0)
        return -1;
    const char *p = segment(name + 9);
    size_t kl = strlen(kind);
    if (p == NULL || p[0] != '/' || strncmp(p + 1, kind, kl) != 0 || p[1 + kl] != '/')
        return -1;
    const char *e = segment(p + 2 + kl);
    return e != NULL && *e == '\0' ? 0 : -1;
}
