/* vlq-copy-bw: the device's copy bandwidth, the ceiling vlq-bench-gpu's decode figures are
 * shares of (METHOD.md: measure the ceiling on the machine, don't take the datasheet's).
 * A device-to-device cudaMemcpy of 2 GiB, 3 warm-up and 20 timed with events, over two
 * buffer pairs in turn (4 GiB each way: past any cache); prints the median in GB/s,
 * counting bytes read plus bytes written, on one line: "copy_gbps N". Exit 1 on any CUDA
 * error, with its words. */
#include <cuda_runtime.h>

#include <stdio.h>
#include <stdlib.h>

#define CB_BYTES ((size_t)2 << 30)
#define CB_RUNS 20

static int cb_check(cudaError_t e, const char *what)
{
    if (e == cudaSuccess)
        return 0;
    fprintf(stderr, "vlq-copy-bw: %s: %s\n", what, cudaGetErrorString(e));
    return 1;
}

static int cb_cmp(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int main(void)
{
    void *buf[4] = {NULL, NULL, NULL, NULL};
    cudaEvent_t t0, t1;
    float ms[CB_RUNS];
    for (int i = 0; i < 4; i++)
        if (cb_check(cudaMalloc(&buf[i], CB_BYTES), "cudaMalloc"))
            return 1;
    for (int i = 0; i < 4; i++) /* never time zeros or untouched pages */
        if (cb_check(cudaMemset(buf[i], 0x5a + i, CB_BYTES), "cudaMemset"))
            return 1;
    if (cb_check(cudaEventCreate(&t0), "cudaEventCreate") ||
        cb_check(cudaEventCreate(&t1), "cudaEventCreate"))
        return 1;
    for (int r = -3; r < CB_RUNS; r++) {
        int p = (r + 3) % 2;
        if (cb_check(cudaEventRecord(t0, 0), "cudaEventRecord") ||
            cb_check(cudaMemcpy(buf[2 * p + 1], buf[2 * p], CB_BYTES, cudaMemcpyDeviceToDevice),
                     "cudaMemcpy") ||
            cb_check(cudaEventRecord(t1, 0), "cudaEventRecord") ||
            cb_check(cudaEventSynchronize(t1), "cudaEventSynchronize"))
            return 1;
        if (r >= 0 && cb_check(cudaEventElapsedTime(&ms[r], t0, t1), "cudaEventElapsedTime"))
            return 1;
    }
    qsort(ms, CB_RUNS, sizeof ms[0], cb_cmp);
    double med = (ms[CB_RUNS / 2 - 1] + ms[CB_RUNS / 2]) / 2;
    printf("copy_gbps %.1f\n", 2.0 * (double)CB_BYTES / (med * 1e-3) / 1e9);
    for (int i = 0; i < 4; i++)
        cudaFree(buf[i]);
    return 0;
}
