/* vlq-backend-nosym.so: a shared object without vlq_backend_entry, for the loader's
 * "not a vlq backend" error. */
__attribute__((visibility("default"))) int nosym_answer(void);

int nosym_answer(void)
{
    return 42;
}
