/* err: error codes, messages and the per-code policy table (see err.h). */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
    int code;
    const char *name;
    int transient;
} err_table[] = {
    {VLQ_OK, "OK", 0},           {VLQ_EINPUT, "EINPUT", 0}, {VLQ_EBUSY, "EBUSY", 1},
    {VLQ_ENOMEM, "ENOMEM", 0},   {VLQ_EMODEL, "EMODEL", 0}, {VLQ_EIO, "EIO", 1},
    {VLQ_EDEVICE, "EDEVICE", 1}, {VLQ_ENET, "ENET", 1},     {VLQ_ECANCEL, "ECANCEL", 0},
    {VLQ_ENOTSUP, "ENOTSUP", 0},
};

int err_set(char *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, VLQ_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return code;
}

void err_prefix(char *err, const char *fmt, ...)
{
    if (!err || !err[0])
        return;
    char pre[VLQ_ERRLEN], old[VLQ_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err, VLQ_ERRLEN);
    old[VLQ_ERRLEN - 1] = '\0';
    snprintf(err, VLQ_ERRLEN, "%s: %s", pre, old);
}

const char *err_name(int code)
{
    for (size_t i = 0; i < sizeof err_table / sizeof err_table[0]; i++)
        if (err_table[i].code == code)
            return err_table[i].name;
    return "EUNKNOWN";
}

int err_is_transient(int code)
{
    for (size_t i = 0; i < sizeof err_table / sizeof err_table[0]; i++)
        if (err_table[i].code == code)
            return err_table[i].transient;
    return 0;
}
