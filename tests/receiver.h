/* receiver: examples/webhook_receiver.py as a test fixture: start it on a free loopback
 * port (or one given with --port N in the args), wait until it listens, stop it. */
#ifndef VLQ_TEST_RECEIVER_H
#define VLQ_TEST_RECEIVER_H

#include <stddef.h>
#include <sys/types.h>

typedef struct {
    pid_t pid;
    int port;
    char url[64]; /* http://127.0.0.1:<port>/hook */
} Receiver;

/* Start the receiver with extra (shell-quoted) args; proxies of the environment are
 * unset so libcurl talks to it directly. Returns 0, or -1 after a failed check when it
 * did not come up within 5 s. */
int receiver_start(Receiver *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The receiver's URL for another path ("/hang") into out[cap]; the receiver answers per
 * path with --hang-path and --trickle-path (a hanging and a trickling endpoint beside the
 * normal one). Cannot fail (truncated to cap). */
void receiver_url(const Receiver *r, const char *path, char *out, size_t cap);
/* Unset the proxy variables of the environment, so libcurl talks to loopback directly. */
void receiver_no_proxy(void);
/* Stop it (SIGTERM, wait). NULL-safe on a receiver that never started. */
void receiver_stop(Receiver *r);

#endif
