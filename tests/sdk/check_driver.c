/*
 * mp_check_driver DIR NAME: runs the daemon's loader on DIR/NAME.so, so
 * tests can ask "would mailpulsed accept this file?" without starting the
 * daemon. Exit 0 and a one-line summary when accepted, 1 and the loader's
 * message when refused, 2 on bad usage.
 */
#include <stdio.h>
#include <stdlib.h>

#include "loader/loader.h"

int main(int argc, char **argv)
{
    char *error = NULL;
    mpl_driver *drv;

    if (argc != 3) {
        fprintf(stderr, "usage: %s DRIVER_DIR NAME\n", argv[0]);
        return 2;
    }
    drv = mpl_load(argv[1], argv[2], &error);
    if (drv == NULL) {
        fprintf(stderr, "refused: %s\n", error);
        free(error);
        return 1;
    }
    printf("%s: accepted: driver \"%s\" %s, ABI %u.%u, descriptor %u bytes\n", drv->path,
           drv->desc.name, drv->desc.version != NULL ? drv->desc.version : "(no version)",
           drv->desc.abi_major, drv->desc.abi_minor, drv->desc.struct_size);
    mpl_unload(&drv);
    return 0;
}
