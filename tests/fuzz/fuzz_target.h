/* What every libFuzzer target here shares: the entry point libFuzzer calls
 * and the check that turns a broken property into a crash it reports. */
#ifndef MP_FUZZ_TARGET_H
#define MP_FUZZ_TARGET_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                                \
    do {                                                                                 \
        if (!(cond))                                                                     \
            abort();                                                                     \
    } while (0)

#endif
