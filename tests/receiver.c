/* receiver: the webhook receiver fixture shared by the webhook and outbox tests. */
#include "receiver.h"

#include "test.h"
#include "util.h"

#include <signal.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

void receiver_no_proxy(void)
{
    const char *vars[] = {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
                          "all_proxy",  "ALL_PROXY",  NULL};
    for (int i = 0; vars[i]; i++)
        unsetenv(vars[i]);
}

int receiver_start(Receiver *r, const char *fmt, ...)
{
    receiver_no_proxy();
    char args[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *cmd = xasprintf("exec python3 %s/examples/webhook_receiver.py --port 0 "
                          "--port-file port.txt %s",
                          test_root(), args);
    unlink("port.txt");
    fflush(NULL);
    r->pid = fork();
    if (r->pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    free(cmd);
    for (int i = 0; i < 500; i++) { /* up to 5 s */
        char *data = NULL;
        size_t len;
        if (util_read_file("port.txt", 64, &data, &len, NULL) == 0 && len > 0) {
            r->port = atoi(data);
            free(data);
            snprintf(r->url, sizeof r->url, "http://127.0.0.1:%d/hook", r->port);
            return 0;
        }
        free(data);
        if (waitpid(r->pid, NULL, WNOHANG) == r->pid)
            break;
        util_sleep_ms(10);
    }
    test_fail(__FILE__, __LINE__, "webhook_receiver.py did not start (%s)", args);
    return -1;
}

void receiver_url(const Receiver *r, const char *path, char *out, size_t cap)
{
    snprintf(out, cap, "http://127.0.0.1:%d%s", r->port, path);
}

void receiver_stop(Receiver *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        waitpid(r->pid, NULL, 0);
        r->pid = 0;
    }
}
