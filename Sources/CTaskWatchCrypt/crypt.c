#include "CTaskWatchCrypt.h"

#include <crypt.h>
#include <stdlib.h>
#include <string.h>

// struct crypt_data is about 32 KiB: too big for the small stacks of libmicrohttpd's threads, so it
// lives on the heap for the duration of one call.

static char *copy_password(const char *password, size_t length) {
    if (memchr(password, 0, length) != NULL) return NULL;  // crypt would silently cut it short.
    char *copy = malloc(length + 1);
    if (copy == NULL) return NULL;
    memcpy(copy, password, length);
    copy[length] = 0;
    return copy;
}

static void wipe_and_free(void *pointer, size_t size) {
    if (pointer == NULL) return;
    explicit_bzero(pointer, size);
    free(pointer);
}

int tw_crypt_verify(const char *password, size_t length, const char *hash) {
    size_t hashLength = strlen(hash);
    if (hashLength == 0 || hashLength >= CRYPT_OUTPUT_SIZE) return -1;
    char *copy = copy_password(password, length);
    if (copy == NULL) return memchr(password, 0, length) != NULL ? 0 : -1;
    struct crypt_data *data = calloc(1, sizeof(struct crypt_data));
    if (data == NULL) {
        wipe_and_free(copy, length + 1);
        return -1;
    }
    const char *computed = crypt_r(copy, hash, data);
    int result;
    // libxcrypt returns a string starting with '*' on failure instead of NULL.
    if (computed == NULL || computed[0] == '*') {
        result = -1;
    } else {
        size_t computedLength = strlen(computed);
        unsigned char difference = computedLength == hashLength ? 0 : 1;
        for (size_t i = 0; i < hashLength; i++) {
            unsigned char other = i < computedLength ? (unsigned char)computed[i] : 0;
            difference |= (unsigned char)hash[i] ^ other;
        }
        result = difference == 0 ? 1 : 0;
    }
    wipe_and_free(data, sizeof(struct crypt_data));
    wipe_and_free(copy, length + 1);
    return result;
}

int tw_bcrypt_hash(const char *password, size_t length, unsigned long cost, char *output, size_t outputSize) {
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    if (crypt_gensalt_rn("$2b$", cost, NULL, 0, salt, sizeof salt) == NULL) return -1;
    char *copy = copy_password(password, length);
    if (copy == NULL) return -1;
    struct crypt_data *data = calloc(1, sizeof(struct crypt_data));
    if (data == NULL) {
        wipe_and_free(copy, length + 1);
        return -1;
    }
    const char *computed = crypt_r(copy, salt, data);
    int result = -1;
    if (computed != NULL && computed[0] != '*' && strlen(computed) < outputSize) {
        strcpy(output, computed);
        result = 0;
    }
    wipe_and_free(data, sizeof(struct crypt_data));
    wipe_and_free(copy, length + 1);
    return result;
}
