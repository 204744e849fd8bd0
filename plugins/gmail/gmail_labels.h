/*
 * gmail_labels: Gmail labels as folders and flags, the way mail users see
 * them.
 *
 * Folders: the system labels INBOX, SENT, DRAFT, SPAM and TRASH (roles
 * INBOX, SENT, DRAFTS, JUNK, TRASH; the folder is named by the label id)
 * and every user label (named by its display name, e.g. "Work/Projects").
 * Flags: UNREAD is the absence of "\Seen", STARRED is "\Flagged",
 * IMPORTANT is "$Important", CATEGORY_<X> is "$Category_<X>" (X as Gmail
 * spells it, e.g. "$Category_SOCIAL"). Other system labels (CHAT, the
 * coloured stars) are neither. A message is one message whatever its
 * labels: its folders are all its folder labels at once.
 *
 * Pure (no host); the table is filled from a labels.list answer.
 */
#ifndef GMAIL_LABELS_H
#define GMAIL_LABELS_H

#include <stddef.h>

#include <mailpulse/driver.h>

typedef enum gmail_label_kind {
    GMAIL_LABEL_IGNORED = 0, /* neither folder nor flag                    */
    GMAIL_LABEL_FOLDER = 1,  /* `name` is the folder name                  */
    GMAIL_LABEL_FLAG = 2,    /* `name` is the flag                          */
    GMAIL_LABEL_UNREAD = 3,  /* absence of \Seen                           */
} gmail_label_kind;

typedef struct gmail_label {
    char *id;   /* Gmail label id ("INBOX", "Label_12")                    */
    char *name; /* folder name or flag, NULL for IGNORED                    */
    gmail_label_kind kind;
    mp_folder_role role;
} gmail_label;

typedef struct gmail_labels {
    gmail_label *v;
    size_t n;
} gmail_labels;

/* What a system label id (or a user label `name` when `user` is nonzero)
 * means; fills *out with owned strings. */
void gmail_label_classify(const char *id, const char *name, int user, gmail_label *out);

/* Replace the table with a labels.list answer `{"labels":[{id,name,type}]}`.
 * Returns 0, or -1 with *error_r (malloc'd) on malformed JSON; the table is
 * unchanged then. */
int gmail_labels_parse(gmail_labels *t, const char *json, size_t len, char **error_r);

/* The label `id` means; system labels are known without a table. NULL for
 * a user label not in the table. */
const gmail_label *gmail_labels_find(const gmail_labels *t, const char *id);

void gmail_labels_clear(gmail_labels *t);

/* A message's place given its labelIds: the folder names it is in
 * (pointers into the table or static strings, valid while the table is)
 * and its flags ("\Seen \Flagged $Important", malloc'd, "" for none). */
typedef struct gmail_placement {
    const char **folders;
    size_t n_folders;
    char *flags;
    size_t unknown; /* label ids the table did not know (refresh it)   */
} gmail_placement;

void gmail_labels_place(const gmail_labels *t, const char *const *ids, size_t n,
                        gmail_placement *out);
void gmail_placement_clear(gmail_placement *p);

/* Whether a change of label `id` can change a message's flags. */
int gmail_label_is_flag(const gmail_labels *t, const char *id);

#endif /* GMAIL_LABELS_H */
