/* whsec: the webhook secret format (see whsec.h). Decoding uses libcrypto's
 * EVP_DecodeBlock after a strict check of the alphabet and padding. */
#include "whsec.h"

#include "err.h"
#include "util.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

static int b64_char(int c)
{
    return isalnum(c) || c == '+' || c == '/';
}

/* Decode standard base64 s (padding optional, no whitespace) into a new buffer (caller
 * frees) of *out_len bytes; NULL when s is not base64. */
static unsigned char *b64_decode(const char *s, size_t *out_len)
{
    size_t n = strlen(s), pad = 0;
    while (n > 0 && s[n - 1] == '=') {
        n--;
        pad++;
    }
    if (pad > 2 || n == 0 || n % 4 == 1)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (!b64_char((unsigned char)s[i]))
            return NULL;
    if (pad && (n + pad) % 4 != 0)
        return NULL;
    /* EVP_DecodeBlock wants a multiple of 4 and returns 3 bytes per 4 chars, padding
     * bytes included: re-pad here and drop the padding bytes from its count. */
    size_t missing = (4 - n % 4) % 4;
    char *padded = xmalloc(n + missing + 1);
    memcpy(padded, s, n);
    memset(padded + n, '=', missing);
    padded[n + missing] = '\0';
    unsigned char *out = xmalloc((n + missing) / 4 * 3 + 1);
    int got = EVP_DecodeBlock(out, (const unsigned char *)padded, (int)(n + missing));
    free(padded);
    if (got < 0) {
        free(out);
        return NULL;
    }
    *out_len = (size_t)got - missing;
    return out;
}

unsigned char *whsec_key(const char *secret, size_t *key_len, char *err)
{
    size_t plen = strlen(WHSEC_PREFIX);
    if (!secret || strncmp(secret, WHSEC_PREFIX, plen) != 0) {
        err_set(err, VLQ_EINPUT, "webhook secret: must start with \"whsec_\"");
        return NULL;
    }
    unsigned char *key = b64_decode(secret + plen, key_len);
    if (!key) {
        err_set(err, VLQ_EINPUT, "webhook secret: the part after \"whsec_\" is not base64");
        return NULL;
    }
    if (*key_len < WHSEC_KEY_MIN || *key_len > WHSEC_KEY_MAX) {
        err_set(err, VLQ_EINPUT, "webhook secret: key is %zu bytes, must be %d to %d", *key_len,
                WHSEC_KEY_MIN, WHSEC_KEY_MAX);
        OPENSSL_cleanse(key, *key_len);
        free(key);
        return NULL;
    }
    return key;
}

int whsec_check(const char *secret, char *err)
{
    size_t key_len;
    unsigned char *key = whsec_key(secret, &key_len, err);
    if (!key)
        return VLQ_EINPUT;
    OPENSSL_cleanse(key, key_len);
    free(key);
    return 0;
}

