/* whsec: the Standard Webhooks secret format, "whsec_" + standard base64 of a 24..64-byte
 * key: checking it (the config, submit) and decoding it (webhook signing). A base module
 * so the configuration can check a secret without the webhook sender (curl) above it. */
#ifndef VLQ_WHSEC_H
#define VLQ_WHSEC_H

#include <stddef.h>

#define WHSEC_PREFIX "whsec_"
#define WHSEC_KEY_MIN 24 /* bytes; Standard Webhooks: 24..64 */
#define WHSEC_KEY_MAX 64

/* Check a "whsec_<base64>" secret: standard base64 (padding optional) of a 24..64-byte
 * key. 0 or VLQ_EINPUT with the reason. */
int whsec_check(const char *secret, char *err);
/* The HMAC key of secret in a new buffer of *key_len bytes (the caller cleanses and
 * frees it), or NULL with err set (VLQ_EINPUT's reasons). */
unsigned char *whsec_key(const char *secret, size_t *key_len, char *err);

#endif
