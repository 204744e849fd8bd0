/* list_folders: the labels that are folders (see gmail_labels.h). */
#include "gmail_driver.h"

mp_status gmail_list_folders(mp_account *acct, mp_folder_sink *sink, mp_error *err)
{
    gmail_account *a = gmail_host->account_state(acct);
    /* Always a fresh labels.list (1 unit): labels are created and renamed. */
    mp_status st = gmail_load_labels(a, err);
    if (st != MP_OK)
        return st;
    for (size_t i = 0; i < a->labels.n; i++) {
        const gmail_label *l = &a->labels.v[i];
        if (l->kind == GMAIL_LABEL_FOLDER)
            gmail_host->folder_add(sink, l->name, l->role);
    }
    return MP_OK;
}
