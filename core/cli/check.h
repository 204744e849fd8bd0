/*
 * An admin's preflight from the command line: POST /v1/accounts/{id}/check,
 * poll GET /v1/accounts/{id}/check until it finished, print the results.
 * `mailpulsectl check` is built from these; commands that run a check as a
 * step of their own (gmail-setup) call them too.
 *
 * Every function prints its own errors on stderr (sanitized: the daemon
 * relays provider text) and returns an exit code: one of MPCTL_CHECK_*
 * below, or MPCTL_EXIT_CONNECT when the daemon cannot be reached.
 */
#ifndef MP_CLI_CHECK_H
#define MP_CLI_CHECK_H

#include <stdint.h>

#include <jansson.h>

#include "client.h"

#define MPCTL_CHECK_TIMEOUT_MS 60000 /* default wait                        */
#define MPCTL_CHECK_POLL_MS 200      /* between two GETs                    */

/* Exit codes of a check. */
enum {
    MPCTL_CHECK_PASSED = 0, /* finished; no result is "fail"               */
    MPCTL_CHECK_FAILED = 1, /* finished; at least one result is "fail"     */
    MPCTL_CHECK_ERROR = 2,  /* refused (404, 409, ...), the check could not
                               run (state "error"), timeout or interrupt   */
};

/* Ask for a check of `account` ({"live": true} with `live`). On 202 sets
 * *id_r to the check's id (the running one's when one was under way) and
 * returns MPCTL_CHECK_PASSED. */
int mpctl_check_start(const mpctl_conn *conn, const char *account, int live,
                      int64_t *id_r);

/* Poll until check `id` of `account` is "done" or "error", for at most
 * `timeout_ms` (0: MPCTL_CHECK_TIMEOUT_MS). MPCTL_CHECK_PASSED with
 * *result_r set to the final GET answer (json_decref it), whatever the
 * results say; MPCTL_CHECK_ERROR on timeout, interrupt (SIGINT), an error
 * answer or a newer check that replaced this one. */
int mpctl_check_wait(const mpctl_conn *conn, const char *account, int64_t id,
                     int64_t timeout_ms, json_t **result_r);

/* The exit code a finished check's answer stands for. */
int mpctl_check_verdict(const json_t *result);

/* Results as a table (OUTCOME, CHECK, DETAIL) and a summary line on
 * stdout; a check that could not run says why on stderr. */
void mpctl_check_print(const char *account, const json_t *result);

/* start + wait + print (with `json`: the final answer as JSON instead),
 * returning the verdict. With result_r non-NULL the final answer is
 * handed over there (NULL when there is none). */
int mpctl_check_run(const mpctl_conn *conn, const char *account, int live,
                    int64_t timeout_ms, int json, json_t **result_r);

#endif
