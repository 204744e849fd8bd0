/* INTERNALDATE and RFC 5322 dates (with the obsolete forms of RFC 5322
 * 4.3: two-digit years, named zones, comments, missing seconds). */
#include <ctype.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "imapc.h"

static const char *const months[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                     "jul", "aug", "sep", "oct", "nov", "dec"};

typedef struct dscan {
    const char *p;
} dscan;

/* Skips white space, commas and (nested) comments. */
static void skip_cfws(dscan *d)
{
    for (;;) {
        while (*d->p == ' ' || *d->p == '\t' || *d->p == '\r' || *d->p == '\n' || *d->p == ',')
            d->p++;
        if (*d->p != '(')
            return;
        int depth = 0;
        while (*d->p != '\0') {
            if (*d->p == '\\' && d->p[1] != '\0') {
                d->p += 2;
                continue;
            }
            if (*d->p == '(')
                depth++;
            else if (*d->p == ')' && --depth == 0) {
                d->p++;
                break;
            }
            d->p++;
        }
    }
}

static int read_int(dscan *d, int max_digits, int *v_r, int *digits_r)
{
    int v = 0, n = 0;
    while (isdigit((unsigned char)*d->p) && n < max_digits) {
        v = v * 10 + (*d->p - '0');
        d->p++;
        n++;
    }
    if (n == 0 || isdigit((unsigned char)*d->p))
        return -1;
    *v_r = v;
    if (digits_r != NULL)
        *digits_r = n;
    return 0;
}

static int read_month(dscan *d, int *mon_r)
{
    for (int i = 0; i < 12; i++) {
        if (strncasecmp(d->p, months[i], 3) == 0 && !isalpha((unsigned char)d->p[3])) {
            *mon_r = i;
            d->p += 3;
            return 0;
        }
    }
    return -1;
}

static int64_t make_time(int year, int mon, int day, int h, int m, int s, int zone_min)
{
    if (year < 1900 || year > 9999 || day < 1 || day > 31 || h > 23 || m > 59 || s > 60)
        return -1;
    struct tm tm = {.tm_year = year - 1900, .tm_mon = mon, .tm_mday = day,
                    .tm_hour = h, .tm_min = m, .tm_sec = s};
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    return (int64_t)t - (int64_t)zone_min * 60;
}

/* "+0200" / "-0700" / named obsolete zones; minutes east of UTC. */
static int read_zone(dscan *d, int *zone_r)
{
    static const struct {
        const char *name;
        int hours;
    } names[] = {{"UT", 0},   {"UTC", 0},  {"GMT", 0},  {"Z", 0},    {"EST", -5},
                 {"EDT", -4}, {"CST", -6}, {"CDT", -5}, {"MST", -7}, {"MDT", -6},
                 {"PST", -8}, {"PDT", -7}};
    if (*d->p == '+' || *d->p == '-') {
        int sign = *d->p == '-' ? -1 : 1;
        d->p++;
        int v, n;
        if (read_int(d, 4, &v, &n) < 0 || n != 4 || v % 100 > 59)
            return -1;
        *zone_r = sign * (v / 100 * 60 + v % 100);
        return 0;
    }
    const char *s = d->p;
    size_t n = 0;
    while (isalpha((unsigned char)s[n]))
        n++;
    if (n == 0) {
        *zone_r = 0; /* no zone at all: RFC 5322 says treat as -0000 */
        return 0;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strlen(names[i].name) == n && strncasecmp(s, names[i].name, n) == 0) {
            *zone_r = names[i].hours * 60;
            d->p += n;
            return 0;
        }
    }
    /* Military and unknown alphabetic zones mean "unknown": -0000. */
    *zone_r = 0;
    d->p += n;
    return 0;
}

static int read_time(dscan *d, int *h, int *m, int *s)
{
    if (read_int(d, 2, h, NULL) < 0 || *d->p != ':')
        return -1;
    d->p++;
    if (read_int(d, 2, m, NULL) < 0)
        return -1;
    *s = 0;
    if (*d->p == ':') {
        d->p++;
        if (read_int(d, 2, s, NULL) < 0)
            return -1;
    }
    return 0;
}

int64_t imap_parse_internaldate(const char *s)
{
    if (s == NULL)
        return -1;
    dscan d = {s};
    int day, mon, year, h, m, sec, zone, n;
    while (*d.p == ' ')
        d.p++;
    if (read_int(&d, 2, &day, NULL) < 0 || *d.p++ != '-' || read_month(&d, &mon) < 0 ||
        *d.p++ != '-' || read_int(&d, 4, &year, &n) < 0 || n != 4 || *d.p++ != ' ' ||
        read_time(&d, &h, &m, &sec) < 0 || *d.p++ != ' ' || (*d.p != '+' && *d.p != '-') ||
        read_zone(&d, &zone) < 0)
        return -1;
    while (*d.p == ' ')
        d.p++;
    if (*d.p != '\0')
        return -1;
    return make_time(year, mon, day, h, m, sec, zone);
}

int64_t imap_parse_rfc5322_date(const char *s)
{
    if (s == NULL)
        return -1;
    dscan d = {s};
    int day, mon, year, h, m, sec, zone, n;
    skip_cfws(&d);
    /* Optional day of week. */
    if (isalpha((unsigned char)*d.p)) {
        while (isalpha((unsigned char)*d.p))
            d.p++;
        skip_cfws(&d);
    }
    if (read_int(&d, 2, &day, NULL) < 0)
        return -1;
    skip_cfws(&d);
    if (*d.p == '-')
        d.p++;
    if (read_month(&d, &mon) < 0)
        return -1;
    skip_cfws(&d);
    if (*d.p == '-')
        d.p++;
    if (read_int(&d, 4, &year, &n) < 0)
        return -1;
    if (n == 2)
        year += year < 50 ? 2000 : 1900;
    else if (n == 3)
        year += 1900;
    skip_cfws(&d);
    if (read_time(&d, &h, &m, &sec) < 0)
        return -1;
    skip_cfws(&d);
    if (read_zone(&d, &zone) < 0)
        return -1;
    return make_time(year, mon, day, h, m, sec, zone);
}
