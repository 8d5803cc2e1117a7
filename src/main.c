/* main: the vlq binary. Everything is in cli_main (src/cli_main.c) so that the test
 * binary with test-only job kinds (tests/vlq_testkinds.c) runs the same program. */
#include "cli.h"

int main(int argc, char **argv) { return cli_main(argc, argv); }
