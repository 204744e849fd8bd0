/*
 * Command line: global options, then a command with its own options.
 * Global options stop at the first non-option ("+") so a command's options
 * never reach the global parser; a command's options may follow its
 * positional arguments (GNU permutation).
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util/util.h"

enum {
    OPT_JSON = 256,
    OPT_AFTER,
    OPT_TYPES,
    OPT_ACCOUNTS,
    OPT_FROM,
    OPT_LIVE,
    OPT_TIMEOUT,
    OPT_PUBLIC_URL,
    OPT_NO_LIVE,
    OPT_STATUS,
    OPT_PUSH,
};

struct command_spec {
    const char *name;
    mpctl_command command;
    int min_pos, max_pos;
    const char *short_opts;
    const struct option *long_opts;
};

static const struct option plain_opts[] = {
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const struct option messages_opts[] = {
    {"folder", required_argument, NULL, 'f'}, {"limit", required_argument, NULL, 'n'},
    {"before", required_argument, NULL, 'b'}, {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
};

static const struct option accounts_opts[] = {
    {"status", required_argument, NULL, OPT_STATUS}, {"push", required_argument, NULL, OPT_PUSH},
    {"limit", required_argument, NULL, 'n'},         {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},                {NULL, 0, NULL, 0},
};

static const struct option events_opts[] = {
    {"follow", no_argument, NULL, 'f'},
    {"after", required_argument, NULL, OPT_AFTER},
    {"types", required_argument, NULL, OPT_TYPES},
    {"accounts", required_argument, NULL, OPT_ACCOUNTS},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const struct option webhooks_opts[] = {
    {"from", required_argument, NULL, OPT_FROM},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const struct option check_opts[] = {
    {"live", no_argument, NULL, OPT_LIVE},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const struct option gmail_setup_opts[] = {
    {"public-url", required_argument, NULL, OPT_PUBLIC_URL},
    {"no-live", no_argument, NULL, OPT_NO_LIVE},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const struct option graph_setup_opts[] = {
    {"no-live", no_argument, NULL, OPT_NO_LIVE},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* A check waits at most this long (--timeout). */
#define CHECK_TIMEOUT_MAX_S 3600

static const struct command_spec commands[] = {
    {"help", MPCTL_CMD_HELP, 0, 1, ":h", plain_opts},
    {"status", MPCTL_CMD_STATUS, 0, 0, ":h", plain_opts},
    {"accounts", MPCTL_CMD_ACCOUNTS, 0, 0, ":hn:", accounts_opts},
    {"account", MPCTL_CMD_ACCOUNT, 1, 1, ":h", plain_opts},
    {"messages", MPCTL_CMD_MESSAGES, 1, 1, ":hf:n:b:", messages_opts},
    {"show", MPCTL_CMD_SHOW, 1, 1, ":h", plain_opts},
    {"sync", MPCTL_CMD_SYNC, 1, 1, ":h", plain_opts},
    {"probe", MPCTL_CMD_PROBE, 1, 1, ":h", plain_opts},
    {"backfill", MPCTL_CMD_BACKFILL, 2, 2, ":h", plain_opts},
    {"events", MPCTL_CMD_EVENTS, 0, 0, ":hf", events_opts},
    {"check-config", MPCTL_CMD_CHECK_CONFIG, 0, 1, ":h", plain_opts},
    {"webhooks", MPCTL_CMD_WEBHOOKS, 0, 2, ":h", webhooks_opts},
    {"gmail-status", MPCTL_CMD_GMAIL_STATUS, 1, 1, ":h", plain_opts},
    {"check", MPCTL_CMD_CHECK, 1, 1, ":h", check_opts},
    {"gmail-setup", MPCTL_CMD_GMAIL_SETUP, 1, 1, ":h", gmail_setup_opts},
    {"graph-setup", MPCTL_CMD_GRAPH_SETUP, 1, 1, ":h", graph_setup_opts},
};

static const struct option global_opts[] = {
    {"config", required_argument, NULL, 'c'},
    {"socket", required_argument, NULL, 's'},
    {"url", required_argument, NULL, 'u'},
    {"token-file", required_argument, NULL, 't'},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

const char *mpctl_usage(void)
{
    return "usage: mailpulsectl [-c CONFIG] [-s SOCKET] [-u URL] [-t TOKEN_FILE] "
           "[--json]\n"
           "                    COMMAND [ARGS]\n"
           "\n"
           "commands:\n"
           "  status                        daemon, drivers and accounts overview\n"
           "  accounts [--status S] [--push P] [--limit N]\n"
           "                                list accounts (every page, N a request)\n"
           "                                and a summary by status and push state\n"
           "  account ID                    one account and its folders\n"
           "  messages ACCOUNT [--folder F] [--limit N] [--before ID]\n"
           "                                list messages, newest first\n"
           "  show MESSAGE_ID               raw message to stdout (--json: metadata)\n"
           "  sync ACCOUNT                  queue a sync now\n"
           "  probe ACCOUNT                 re-detect the provider's capabilities\n"
           "  backfill ACCOUNT FOLDER       queue a backfill step of a folder\n"
           "  events [--follow] [--after N|EPOCH:N] [--types a,b] [--accounts x,y]\n"
           "                                print events (--follow: keep streaming)\n"
           "  webhooks                      outbound webhook endpoints and their delivery\n"
           "  webhooks replay NAME [--from SEQ]\n"
           "                                deliver NAME's dead letters again\n"
           "  gmail-status ACCOUNT          a Gmail account's push: watch, topic, expiry,\n"
           "                                last push and notification, errors, profile\n"
           "  check ACCOUNT [--live] [--timeout SECONDS]\n"
           "                                run the driver's preflight checks and wait\n"
           "                                for them (default 60 s); --live also has a\n"
           "                                test message created; exit 0 all passed,\n"
           "                                1 a check failed, 2 error or timeout\n"
           "  gmail-setup ACCOUNT [--public-url URL] [--no-live] [--timeout SECONDS]\n"
           "                                guided Gmail push setup: preflight, gcloud\n"
           "                                script, a live test message and its latency\n"
           "                                (default wait 120 s); exit 0 ready, 1 setup\n"
           "                                incomplete, 2 error\n"
           "  graph-setup ACCOUNT [--no-live] [--timeout SECONDS]\n"
           "                                guided Outlook push setup: preflight, the\n"
           "                                public URL's validation round trip, the\n"
           "                                subscriptions, a live test message and its\n"
           "                                latency (default wait 120 s); exit 0 ready,\n"
           "                                1 setup incomplete, 2 error\n"
           "  check-config [FILE]           validate a daemon configuration\n"
           "  help                          this text\n"
           "\n"
           "options:\n"
           "  -c, --config FILE      daemon configuration (default $MAILPULSE_CONFIG,\n"
           "                         else /etc/mailpulse/mailpulsed.conf)\n"
           "  -s, --socket PATH      unix socket (default $MAILPULSE_SOCKET, else the\n"
           "                         configuration's http.socket)\n"
           "  -u, --url URL          use TCP, e.g. http://127.0.0.1:8025\n"
           "  -t, --token-file FILE  API token for --url (default: the configuration's)\n"
           "      --json             print the JSON responses\n"
           "  -h, --help             this text\n"
           "\n"
           "exit status: 0 ok, 1 error from the daemon, 2 usage, 3 cannot connect\n";
}

static char *option_error(int c, char **argv)
{
    const char *arg = optind > 0 ? argv[optind - 1] : "?";
    if (c == ':')
        return mpu_asprintf("option '%s' requires an argument", arg);
    if (optopt != 0)
        return mpu_asprintf("unknown option '-%c'", optopt);
    return mpu_asprintf("unknown option '%s'", arg);
}

static int parse_number(const char *opt, const char *s, int64_t min, int64_t *value_r,
                        char **error_r)
{
    if (mpu_parse_i64(s, value_r) < 0 || *value_r < min) {
        *error_r = mpu_asprintf("%s: expected a number >= %lld, got '%s'", opt,
                                (long long)min, s);
        return -1;
    }
    return 0;
}

static int parse_command(const struct command_spec *spec, int argc, char **argv,
                         mpctl_args *a, char **error_r)
{
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, spec->short_opts, spec->long_opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            a->command = MPCTL_CMD_HELP;
            return 0;
        case OPT_JSON:
            a->json = 1;
            break;
        case 'f':
            if (spec->command == MPCTL_CMD_EVENTS)
                a->follow = 1;
            else
                a->folder = optarg;
            break;
        case 'n':
            if (parse_number("--limit", optarg, 1, &a->limit, error_r) < 0)
                return -1;
            /* The daemon's page limit for GET /v1/accounts. */
            if (spec->command == MPCTL_CMD_ACCOUNTS && a->limit > 1000) {
                *error_r = mpu_asprintf("--limit: at most 1000, got '%s'", optarg);
                return -1;
            }
            break;
        case OPT_STATUS:
            a->status = optarg;
            break;
        case OPT_PUSH:
            a->push = optarg;
            break;
        case 'b':
            a->before = optarg;
            break;
        case OPT_AFTER: {
            /* An event id "<epoch>:<seq>" as the stream shows it, or a seq. */
            const char *colon = strchr(optarg, ':');
            int64_t epoch = 0;
            if (colon != NULL) {
                char *head = mpu_strndup(optarg, (size_t)(colon - optarg));
                int bad = parse_number("--after", head, 1, &epoch, error_r) < 0;
                free(head);
                if (bad || parse_number("--after", colon + 1, 0, &a->after, error_r) < 0)
                    return -1;
                a->after_id = optarg;
            } else if (parse_number("--after", optarg, 0, &a->after, error_r) < 0) {
                return -1;
            }
            break;
        }
        case OPT_TYPES:
            a->types = optarg;
            break;
        case OPT_ACCOUNTS:
            a->accounts = optarg;
            break;
        case OPT_FROM:
            if (parse_number("--from", optarg, 0, &a->from, error_r) < 0)
                return -1;
            break;
        case OPT_LIVE:
            a->live = 1;
            break;
        case OPT_NO_LIVE:
            a->no_live = 1;
            break;
        case OPT_PUBLIC_URL:
            a->public_url = optarg;
            break;
        case OPT_TIMEOUT:
            if (parse_number("--timeout", optarg, 1, &a->timeout_s, error_r) < 0)
                return -1;
            if (a->timeout_s > CHECK_TIMEOUT_MAX_S) {
                *error_r = mpu_asprintf("--timeout: at most %d seconds, got '%s'",
                                        CHECK_TIMEOUT_MAX_S, optarg);
                return -1;
            }
            break;
        default:
            *error_r = option_error(c, argv);
            return -1;
        }
    }
    int n = argc - optind;
    if (n < spec->min_pos) {
        *error_r = mpu_asprintf("%s: missing argument", spec->name);
        return -1;
    }
    if (n > spec->max_pos) {
        *error_r = mpu_asprintf("%s: unexpected argument '%s'", spec->name,
                                argv[optind + spec->max_pos]);
        return -1;
    }
    for (int i = 0; i < n; i++)
        a->pos[i] = argv[optind + i];
    a->n_pos = n;
    if (spec->command == MPCTL_CMD_WEBHOOKS) {
        if (n > 0 && strcmp(a->pos[0], "replay") != 0) {
            *error_r = mpu_asprintf("webhooks: unknown subcommand '%s'", a->pos[0]);
            return -1;
        }
        if (n == 1) {
            *error_r = mpu_strdup("webhooks replay: missing endpoint name");
            return -1;
        }
        if (n == 0 && a->from >= 0) {
            *error_r = mpu_strdup("webhooks: --from goes with replay");
            return -1;
        }
    }
    return 0;
}

int mpctl_args_parse(int argc, char **argv, mpctl_args *args_r, char **error_r)
{
    mpctl_args a = {.limit = -1, .after = -1, .from = -1, .timeout_s = -1};
    *error_r = NULL;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+:c:s:u:t:h", global_opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            a.config = optarg;
            break;
        case 's':
            a.socket = optarg;
            break;
        case 'u':
            a.url = optarg;
            break;
        case 't':
            a.token_file = optarg;
            break;
        case OPT_JSON:
            a.json = 1;
            break;
        case 'h':
            a.command = MPCTL_CMD_HELP;
            a.command_name = "help";
            *args_r = a;
            return 0;
        default:
            *error_r = option_error(c, argv);
            return -1;
        }
    }
    if (optind >= argc) {
        *error_r = mpu_strdup("missing command");
        return -1;
    }
    const char *name = argv[optind];
    const struct command_spec *spec = NULL;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, name) == 0)
            spec = &commands[i];
    if (spec == NULL) {
        *error_r = mpu_asprintf("unknown command '%s'", name);
        return -1;
    }
    a.command = spec->command;
    a.command_name = spec->name;
    if (parse_command(spec, argc - optind, argv + optind, &a, error_r) < 0)
        return -1;
    *args_r = a;
    return 0;
}
