/*
 * rs_app: the one process context (see rs_app.h). Lives in reservedcore, not in
 * rs_main.c, so tests that link the modules without main() have it too.
 */
#include "rs_app.h"

rs_app rs_app_g;
