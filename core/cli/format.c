/*
 * Text layout for mailpulsectl: terminal-safe strings, display width,
 * truncation on code point boundaries and column tables.
 *
 * Width is computed from a small built-in table instead of wcwidth():
 * wcwidth() depends on the caller's locale (it returns -1 for every
 * non-ASCII character under LANG=C), and table alignment must not change
 * with the environment.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util/util.h"

#define ELLIPSIS "\xe2\x80\xa6"
#define REPLACEMENT "\xef\xbf\xbd"

/* Decode one UTF-8 sequence of at most `len` bytes. Returns its length, or
 * 0 when the bytes are not a valid shortest-form scalar value. */
static size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp_r)
{
    if (len == 0)
        return 0;
    unsigned char c = s[0];
    size_t n;
    uint32_t cp, min;
    if (c < 0x80) {
        *cp_r = c;
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        n = 2, cp = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    *cp_r = cp;
    return n;
}

struct range {
    uint32_t lo, hi;
};

static const struct range zero_width[] = {
    {0x0300, 0x036f}, {0x0483, 0x0489}, {0x0591, 0x05bd}, {0x0610, 0x061a},
    {0x064b, 0x065f}, {0x0e31, 0x0e31}, {0x0e34, 0x0e3a}, {0x1ab0, 0x1aff},
    {0x1dc0, 0x1dff}, {0x200b, 0x200f}, {0x2060, 0x2064}, {0x20d0, 0x20ff},
    {0xfe00, 0xfe0f}, {0xfe20, 0xfe2f}, {0xfeff, 0xfeff}, {0xe0100, 0xe01ef},
};

static const struct range double_width[] = {
    {0x1100, 0x115f},   {0x231a, 0x231b},   {0x2329, 0x232a},   {0x23e9, 0x23ec},
    {0x23f0, 0x23f0},   {0x23f3, 0x23f3},   {0x25fd, 0x25fe},   {0x2614, 0x2615},
    {0x2648, 0x2653},   {0x26a1, 0x26a1},   {0x26aa, 0x26ab},   {0x26bd, 0x26be},
    {0x26c4, 0x26c5},   {0x26d4, 0x26d4},   {0x26ea, 0x26ea},   {0x26f2, 0x26f5},
    {0x26fa, 0x26fd},   {0x2705, 0x2705},   {0x270a, 0x270b},   {0x2728, 0x2728},
    {0x274c, 0x274c},   {0x2753, 0x2755},   {0x2757, 0x2757},   {0x2795, 0x2797},
    {0x27b0, 0x27b0},   {0x27bf, 0x27bf},   {0x2b1b, 0x2b1c},   {0x2b50, 0x2b50},
    {0x2b55, 0x2b55},   {0x2e80, 0x303e},   {0x3041, 0x33ff},   {0x3400, 0x4dbf},
    {0x4e00, 0x9fff},   {0xa000, 0xa4cf},   {0xa960, 0xa97f},   {0xac00, 0xd7a3},
    {0xf900, 0xfaff},   {0xfe10, 0xfe19},   {0xfe30, 0xfe6f},   {0xff00, 0xff60},
    {0xffe0, 0xffe6},   {0x16fe0, 0x16fe4}, {0x17000, 0x18cff}, {0x1b000, 0x1b2ff},
    {0x1f004, 0x1f004}, {0x1f0cf, 0x1f0cf}, {0x1f18e, 0x1f18e}, {0x1f191, 0x1f19a},
    {0x1f200, 0x1f251}, {0x1f300, 0x1f64f}, {0x1f680, 0x1f6ff}, {0x1f7e0, 0x1f7eb},
    {0x1f90c, 0x1f9ff}, {0x1fa70, 0x1faff}, {0x20000, 0x3fffd},
};

static int in_ranges(uint32_t cp, const struct range *r, size_t n)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid].lo)
            hi = mid;
        else if (cp > r[mid].hi)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

static size_t cp_width(uint32_t cp)
{
    if (in_ranges(cp, zero_width, sizeof(zero_width) / sizeof(zero_width[0])))
        return 0;
    if (in_ranges(cp, double_width, sizeof(double_width) / sizeof(double_width[0])))
        return 2;
    return 1;
}

char *mpctl_sanitize(const char *s)
{
    if (s == NULL)
        return mpu_strdup("-");
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s);
    /* Each input byte yields at most 3 output bytes (U+FFFD). */
    char *out = mpu_malloc(len * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_decode(p + i, len - i, &cp);
        if (n == 0) {
            memcpy(out + o, REPLACEMENT, 3);
            o += 3;
            i++;
            continue;
        }
        if (cp == '\t' || cp == '\n' || cp == '\r')
            out[o++] = ' ';
        else if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f))
            out[o++] = '?';
        else {
            memcpy(out + o, p + i, n);
            o += n;
        }
        i += n;
    }
    out[o] = '\0';
    return out;
}

size_t mpctl_utf8_width(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s), cols = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_decode(p + i, len - i, &cp);
        if (n == 0) {
            cols++;
            i++;
            continue;
        }
        cols += cp_width(cp);
        i += n;
    }
    return cols;
}

size_t mpctl_utf8_prefix(const char *s, size_t max_cols, size_t *cols_r)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s), cols = 0, i = 0;
    while (i < len) {
        uint32_t cp;
        size_t n = utf8_decode(p + i, len - i, &cp);
        size_t w = n == 0 ? 1 : cp_width(cp);
        if (n == 0)
            n = 1;
        /* Zero-width marks always fit, so those following the last
         * character taken stay with it: an accent is never cut off. */
        if (cols + w > max_cols)
            break;
        cols += w;
        i += n;
    }
    if (cols_r != NULL)
        *cols_r = cols;
    return i;
}

char *mpctl_utf8_truncate(const char *s, size_t max_cols)
{
    size_t cols;
    size_t n = mpctl_utf8_prefix(s, max_cols, &cols);
    if (s[n] == '\0')
        return mpu_strdup(s);
    if (max_cols == 0)
        return mpu_strdup("");
    n = mpctl_utf8_prefix(s, max_cols - 1, NULL);
    char *out = mpu_malloc(n + sizeof(ELLIPSIS));
    memcpy(out, s, n);
    memcpy(out + n, ELLIPSIS, sizeof(ELLIPSIS));
    return out;
}

char *mpctl_format_duration(int64_t seconds)
{
    if (seconds < 0)
        seconds = 0;
    int64_t d = seconds / 86400, h = seconds / 3600 % 24, m = seconds / 60 % 60,
            s = seconds % 60;
    if (d > 0)
        return mpu_asprintf("%" PRId64 "d %" PRId64 "h %" PRId64 "m", d, h, m);
    if (h > 0)
        return mpu_asprintf("%" PRId64 "h %" PRId64 "m %" PRId64 "s", h, m, s);
    if (m > 0)
        return mpu_asprintf("%" PRId64 "m %" PRId64 "s", m, s);
    return mpu_asprintf("%" PRId64 "s", s);
}

/* ---- tables ---- */

struct mpctl_table {
    size_t n_cols;
    char **headers;
    size_t *max;
    int *right;
    char **cells; /* n_rows * n_cols, row-major */
    size_t n_rows, cap_rows;
};

mpctl_table *mpctl_table_new(size_t n_cols, const char *const *headers)
{
    mpctl_table *t = mpu_calloc(1, sizeof(*t));
    t->n_cols = n_cols;
    t->headers = mpu_calloc(n_cols, sizeof(char *));
    t->max = mpu_calloc(n_cols, sizeof(size_t));
    t->right = mpu_calloc(n_cols, sizeof(int));
    for (size_t c = 0; c < n_cols; c++)
        t->headers[c] = mpctl_sanitize(headers[c]);
    return t;
}

void mpctl_table_set_max(mpctl_table *t, size_t col, size_t max_cols)
{
    if (col < t->n_cols)
        t->max[col] = max_cols;
}

void mpctl_table_set_right(mpctl_table *t, size_t col)
{
    if (col < t->n_cols)
        t->right[col] = 1;
}

void mpctl_table_add_row(mpctl_table *t, const char *const *cells)
{
    if (t->n_rows == t->cap_rows) {
        t->cap_rows = t->cap_rows ? t->cap_rows * 2 : 16;
        t->cells = mpu_realloc(t->cells, t->cap_rows * t->n_cols * sizeof(char *));
    }
    char **row = t->cells + t->n_rows * t->n_cols;
    for (size_t c = 0; c < t->n_cols; c++)
        row[c] = mpctl_sanitize(cells[c] != NULL && cells[c][0] == '\0' ? "-" : cells[c]);
    t->n_rows++;
}

size_t mpctl_table_rows(const mpctl_table *t)
{
    return t->n_rows;
}

struct strbuf {
    char *buf;
    size_t len, cap;
};

static void sb_add(struct strbuf *sb, const char *s, size_t n)
{
    if (sb->len + n + 1 > sb->cap) {
        while (sb->len + n + 1 > sb->cap)
            sb->cap = sb->cap ? sb->cap * 2 : 256;
        sb->buf = mpu_realloc(sb->buf, sb->cap);
    }
    memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = '\0';
}

static void sb_spaces(struct strbuf *sb, size_t n)
{
    static const char spaces[] = "                                ";
    while (n > 0) {
        size_t k = n < sizeof(spaces) - 1 ? n : sizeof(spaces) - 1;
        sb_add(sb, spaces, k);
        n -= k;
    }
}

static void render_line(struct strbuf *sb, const mpctl_table *t, char *const *cells,
                        const size_t *widths)
{
    /* Trailing padding would be invisible noise, so the last non-empty
     * cell ends the line. */
    size_t line_start = sb->len;
    for (size_t c = 0; c < t->n_cols; c++) {
        size_t w = mpctl_utf8_width(cells[c]);
        size_t pad = widths[c] > w ? widths[c] - w : 0;
        if (c > 0)
            sb_spaces(sb, 2);
        if (t->right[c])
            sb_spaces(sb, pad);
        sb_add(sb, cells[c], strlen(cells[c]));
        if (!t->right[c] && c + 1 < t->n_cols)
            sb_spaces(sb, pad);
    }
    while (sb->len > line_start && sb->buf[sb->len - 1] == ' ')
        sb->buf[--sb->len] = '\0';
    sb_add(sb, "\n", 1);
}

char *mpctl_table_render(const mpctl_table *t)
{
    size_t total = (t->n_rows + 1) * t->n_cols;
    char **shown = mpu_calloc(total, sizeof(char *));
    size_t *widths = mpu_calloc(t->n_cols, sizeof(size_t));
    for (size_t r = 0; r <= t->n_rows; r++) {
        char *const *src = r == 0 ? t->headers : t->cells + (r - 1) * t->n_cols;
        for (size_t c = 0; c < t->n_cols; c++) {
            char *cell =
                t->max[c] ? mpctl_utf8_truncate(src[c], t->max[c]) : mpu_strdup(src[c]);
            size_t w = mpctl_utf8_width(cell);
            if (w > widths[c])
                widths[c] = w;
            shown[r * t->n_cols + c] = cell;
        }
    }
    struct strbuf sb = {0};
    sb_add(&sb, "", 0);
    for (size_t r = 0; r <= t->n_rows; r++)
        render_line(&sb, t, shown + r * t->n_cols, widths);
    for (size_t i = 0; i < total; i++)
        free(shown[i]);
    free(shown);
    free(widths);
    return sb.buf;
}

void mpctl_table_free(mpctl_table **tp)
{
    mpctl_table *t = *tp;
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
        free(t->cells[i]);
    for (size_t c = 0; c < t->n_cols; c++)
        free(t->headers[c]);
    free(t->cells);
    free(t->headers);
    free(t->max);
    free(t->right);
    free(t);
    *tp = NULL;
}
