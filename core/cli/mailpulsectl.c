/*
 * mailpulsectl: command-line client of mailpulsed's HTTP API.
 */
#include <stdio.h>
#include <stdlib.h>

#include "commands.h"

int main(int argc, char **argv)
{
    mpctl_args args;
    char *error = NULL;
    if (mpctl_args_parse(argc, argv, &args, &error) < 0) {
        fprintf(stderr, "mailpulsectl: %s\n\n%s", error, mpctl_usage());
        free(error);
        return MPCTL_EXIT_USAGE;
    }
    if (args.command == MPCTL_CMD_HELP) {
        fputs(mpctl_usage(), stdout);
        return MPCTL_EXIT_OK;
    }
    if (args.command == MPCTL_CMD_CHECK_CONFIG)
        return mpctl_cmd_check_config(&args);

    if (mpctl_client_init() < 0) {
        fprintf(stderr, "mailpulsectl: cannot initialize libcurl\n");
        return MPCTL_EXIT_ERROR;
    }
    mpctl_conn conn;
    int rc = mpctl_conn_setup(&args, &conn);
    if (rc == MPCTL_EXIT_OK)
        rc = mpctl_cmd_run(&args, &conn);
    mpctl_conn_clear(&conn);
    mpctl_client_cleanup();
    if (fflush(stdout) != 0 && rc == MPCTL_EXIT_OK)
        rc = MPCTL_EXIT_ERROR;
    return rc;
}
