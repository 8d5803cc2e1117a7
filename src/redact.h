/* redact: secrets out of everything vlq prints (command output, error messages, logs).
 *
 * What counts as a secret, wherever it stands in a text: the userinfo of a URL
 * (user:pw@host shows as user:***@host; a userinfo without a password may be a token,
 * so tok@host shows as ***@host), a Standard Webhooks secret
 * ("whsec_..." -> "whsec_***"), and a libpq password ("password=..." -> "password=***").
 * The CLI's error printer and log.c pass every line through redact_text, and the
 * commands pass every stored string they print (URLs, errors) through it, so a secret
 * never reaches stdout, stderr or a log. A base module: pure string work. */
#ifndef VLQ_REDACT_H
#define VLQ_REDACT_H

#include <stddef.h>

#define REDACT_MASK "***"

/* A copy of text with every secret masked (the caller frees it); NULL for NULL. */
char *redact_text(const char *text);
/* Mask the secrets of the NUL-terminated string in buf (n bytes) in place, truncating
 * to n - 1 bytes when masking makes it longer. Cannot fail. */
void redact_in_place(char *buf, size_t n);
/* What to show of a secret value: "" when empty, else "whsec_***" or "***". Static. */
const char *redact_secret(const char *secret);

#endif
