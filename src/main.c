/* main: the vlq binary: the built-in job kinds (ocr, summarize), then cli_main
 * (src/cli_main.c), which the test binary with test-only kinds (tests/vlq_testkinds.c)
 * shares. */
#include "cli.h"
#include "jobs.h"

int main(int argc, char **argv)
{
    jobs_register(&ocr_kind);
    jobs_register(&summarize_kind);
    return cli_main(argc, argv);
}
