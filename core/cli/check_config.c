/*
 * `check-config`: the daemon owns validation (it knows the drivers'
 * keys), so mailpulsectl becomes `mailpulsed -c FILE --check-config` and
 * its exit status is the daemon's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"

int mpctl_cmd_check_config(const mpctl_args *args)
{
    const char *file = args->n_pos > 0 ? args->pos[0] : args->config;
    const char *env = getenv("MAILPULSE_CONFIG");
    if (file == NULL && env != NULL && env[0] != '\0')
        file = env;
    if (file == NULL && access(MPCTL_DEFAULT_CONFIG, F_OK) == 0)
        file = MPCTL_DEFAULT_CONFIG;
    const char *daemon = getenv("MAILPULSED");
    if (daemon == NULL || daemon[0] == '\0')
        daemon = "mailpulsed";

    char *argv[5];
    int n = 0;
    argv[n++] = (char *)daemon;
    if (file != NULL) {
        argv[n++] = (char *)"-c";
        argv[n++] = (char *)file;
    }
    argv[n++] = (char *)"--check-config";
    argv[n] = NULL;
    fflush(NULL);
    execvp(daemon, argv);
    fprintf(stderr, "mailpulsectl: cannot run %s: %s\n", daemon, strerror(errno));
    return MPCTL_EXIT_ERROR;
}
