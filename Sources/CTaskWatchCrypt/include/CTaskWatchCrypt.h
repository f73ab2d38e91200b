#ifndef CTASKWATCHCRYPT_H
#define CTASKWATCHCRYPT_H

#include <stddef.h>

/// Checks `password` (`length` bytes, no NUL inside) against a crypt(3) hash such as a bcrypt
/// `$2b$10$...` string. Returns 1 on a match, 0 on a mismatch, -1 when the hash cannot be used
/// (unsupported method, malformed, out of memory). The comparison of crypt's output with `hash`
/// takes the same time wherever the first difference is.
int tw_crypt_verify(const char *password, size_t length, const char *hash);

/// Hashes `password` with bcrypt (`$2b$`) at `cost` (4...31) and a random salt from the kernel.
/// Writes the NUL-terminated hash into `output` (at least 128 bytes). Returns 0, or -1 on failure.
int tw_bcrypt_hash(const char *password, size_t length, unsigned long cost, char *output, size_t outputSize);

#endif
