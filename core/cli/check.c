/*
 * mailpulsectl check ACCOUNT [--live] [--timeout SECONDS]: run the
 * driver's preflight and wait for it (see check.h).
 *
 * The daemon runs a check when the account's syncs leave room, so the
 * answer to the POST is only an id; the results come from polling the GET
 * until that id is finished. Exit codes follow the results, not only the
 * transport: a script can tell "the setup is broken" (1) from "could not
 * find out" (2).
 */
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "util/util.h"

static char *check_path(const char *account)
{
    char *id = mpctl_path_escape(account);
    char *path = mpu_asprintf("/v1/accounts/%s/check", id);
    free(id);
    return path;
}

/* A JSON object from a 2xx answer, or an exit code with the error shown. */
static int answer_json(const mpctl_conn *conn, int rc, mpctl_response *resp, char *error,
                       json_t **root_r)
{
    *root_r = NULL;
    if (rc < 0) {
        rc = mpctl_report_connect_error(conn, error);
        free(error);
        return rc;
    }
    if (resp->status < 200 || resp->status > 299) {
        mpctl_report_http_error(resp);
        return MPCTL_CHECK_ERROR;
    }
    json_t *root = json_loadb(resp->body, resp->len, 0, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        fprintf(stderr, "mailpulsectl: %ld: invalid JSON from the daemon\n",
                resp->status);
        return MPCTL_CHECK_ERROR;
    }
    *root_r = root;
    return MPCTL_CHECK_PASSED;
}

int mpctl_check_start(const mpctl_conn *conn, const char *account, int live,
                      int64_t *id_r)
{
    char *path = check_path(account);
    mpctl_response resp;
    char *error = NULL;
    int rc = mpctl_post_json(conn, path, live ? "{\"live\":true}" : NULL, &resp, &error);
    json_t *root;
    rc = answer_json(conn, rc, &resp, error, &root);
    mpctl_response_clear(&resp);
    free(path);
    if (rc != MPCTL_CHECK_PASSED)
        return rc;
    json_t *id = json_object_get(root, "id");
    if (!json_is_integer(id)) {
        fprintf(stderr, "mailpulsectl: the daemon's answer names no check id\n");
        json_decref(root);
        return MPCTL_CHECK_ERROR;
    }
    *id_r = (int64_t)json_integer_value(id);
    json_decref(root);
    return MPCTL_CHECK_PASSED;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && !mpctl_interrupted)
        ;
}

int mpctl_check_wait(const mpctl_conn *conn, const char *account, int64_t id,
                     int64_t timeout_ms, json_t **result_r)
{
    *result_r = NULL;
    if (timeout_ms <= 0)
        timeout_ms = MPCTL_CHECK_TIMEOUT_MS;
    int64_t deadline = mpu_mono_ms() + timeout_ms;
    char *path = check_path(account);
    int rc = MPCTL_CHECK_ERROR;
    for (;;) {
        mpctl_response resp;
        char *error = NULL;
        json_t *root;
        int got = mpctl_request(conn, "GET", path, NULL, &resp, &error);
        rc = answer_json(conn, got, &resp, error, &root);
        mpctl_response_clear(&resp);
        if (rc != MPCTL_CHECK_PASSED)
            break;
        json_t *jid = json_object_get(root, "id");
        const char *state = json_string_value(json_object_get(root, "state"));
        int64_t now_id = json_is_integer(jid) ? (int64_t)json_integer_value(jid) : 0;
        if (now_id > id) {
            /* Ours finished and someone else's replaced its record. */
            fprintf(stderr,
                    "mailpulsectl: check %lld was replaced by check %lld before its "
                    "results were read\n",
                    (long long)id, (long long)now_id);
            json_decref(root);
            rc = MPCTL_CHECK_ERROR;
            break;
        }
        if (now_id == id && state != NULL &&
            (strcmp(state, "done") == 0 || strcmp(state, "error") == 0)) {
            *result_r = root;
            rc = MPCTL_CHECK_PASSED;
            break;
        }
        json_decref(root);
        if (mpctl_interrupted) {
            fprintf(stderr, "mailpulsectl: interrupted\n");
            rc = MPCTL_CHECK_ERROR;
            break;
        }
        if (mpu_mono_ms() >= deadline) {
            fprintf(stderr,
                    "mailpulsectl: check %lld has not finished after %lld s (it goes on "
                    "in the daemon; see GET /v1/accounts/{id}/check)\n",
                    (long long)id, (long long)(timeout_ms / 1000));
            rc = MPCTL_CHECK_ERROR;
            break;
        }
        sleep_ms(MPCTL_CHECK_POLL_MS);
    }
    free(path);
    return rc;
}

/* The outcomes the API answers, in the order the summary counts them. */
static const char *const outcome_keys[] = {"ok", "warn", "fail", "skip"};
static const char *const outcome_labels[] = {"OK", "WARN", "FAIL", "SKIP"};
#define N_OUTCOMES (sizeof outcome_keys / sizeof outcome_keys[0])
#define OUTCOME_FAIL 2

static int outcome_index(const char *outcome)
{
    for (size_t i = 0; outcome != NULL && i < N_OUTCOMES; i++)
        if (strcmp(outcome, outcome_keys[i]) == 0)
            return (int)i;
    return -1;
}

int mpctl_check_verdict(const json_t *result)
{
    const char *state = json_string_value(json_object_get(result, "state"));
    if (state == NULL || strcmp(state, "done") != 0)
        return MPCTL_CHECK_ERROR;
    const json_t *results = json_object_get(result, "results");
    size_t i;
    const json_t *r;
    json_array_foreach(results, i, r)
    {
        if (outcome_index(json_string_value(json_object_get(r, "outcome"))) ==
            OUTCOME_FAIL)
            return MPCTL_CHECK_FAILED;
    }
    return MPCTL_CHECK_PASSED;
}

void mpctl_check_print(const char *account, const json_t *result)
{
    static const char *const headers[] = {"OUTCOME", "CHECK", "DETAIL"};
    const json_t *results = json_object_get(result, "results");
    size_t counts[N_OUTCOMES] = {0};
    mpctl_table *t = mpctl_table_new(3, headers);
    mpctl_table_set_max(t, 1, 32);
    size_t i;
    const json_t *r;
    json_array_foreach(results, i, r)
    {
        const char *outcome = json_string_value(json_object_get(r, "outcome"));
        int k = outcome_index(outcome);
        const char *cells[3] = {k >= 0 ? outcome_labels[k] : outcome,
                                json_string_value(json_object_get(r, "name")),
                                json_string_value(json_object_get(r, "detail"))};
        mpctl_table_add_row(t, cells);
        if (k >= 0)
            counts[k]++;
    }
    if (mpctl_table_rows(t) > 0) {
        char *text = mpctl_table_render(t);
        fputs(text, stdout);
        free(text);
    }
    mpctl_table_free(&t);
    char *who = mpctl_sanitize(account);
    const char *state = json_string_value(json_object_get(result, "state"));
    if (state != NULL && strcmp(state, "error") == 0) {
        char *why = mpctl_sanitize(json_string_value(json_object_get(result, "error")));
        fprintf(stderr, "mailpulsectl: the check of %s could not run: %s\n", who, why);
        free(why);
    } else if (i == 0) {
        printf("%s: the driver reported no results\n", who);
    } else {
        printf("%s: %zu ok, %zu warnings, %zu failed, %zu skipped\n", who, counts[0],
               counts[1], counts[2], counts[3]);
    }
    free(who);
}

int mpctl_check_run(const mpctl_conn *conn, const char *account, int live,
                    int64_t timeout_ms, int json, json_t **result_r)
{
    int64_t id = 0;
    json_t *result = NULL;
    if (result_r != NULL)
        *result_r = NULL;
    int rc = mpctl_check_start(conn, account, live, &id);
    if (rc == MPCTL_CHECK_PASSED)
        rc = mpctl_check_wait(conn, account, id, timeout_ms, &result);
    if (rc != MPCTL_CHECK_PASSED)
        return rc;
    if (json) {
        json_dumpf(result, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
    } else {
        mpctl_check_print(account, result);
    }
    rc = mpctl_check_verdict(result);
    if (result_r != NULL)
        *result_r = result;
    else
        json_decref(result);
    return rc;
}

int mpctl_cmd_check(const mpctl_args *args, const mpctl_conn *conn)
{
    int64_t timeout_ms = args->timeout_s > 0 ? args->timeout_s * 1000 : 0;
    return mpctl_check_run(conn, args->pos[0], args->live, timeout_ms, args->json, NULL);
}
