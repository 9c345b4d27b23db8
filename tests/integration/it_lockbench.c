/*
 * it_lockbench: the benchmark tool itself works and checks what it reports: a short
 * uncontended run and a short contended run through two lockds end with a RESULT line
 * that has cycles > 0, no errors, no overlaps (mutual exclusion observed in-process)
 * and no fence violations; bad flags exit 2 naming the flag. Speed is NOT asserted here
 * (figures live in the README).
 */
#include "it_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* Value of key=... in a RESULT line, or -1. */
static double result_field(const char *line, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, " %s=", key);
    const char *p = strstr(line, pat);
    return p ? strtod(p + strlen(pat), NULL) : -1;
}

static void run_bench(char *const argv[], char *result, size_t len)
{
    char log[300];
    snprintf(log, sizeof log, "%s/bench.log", th_tmpdir());
    pid_t pid = th_spawn(argv, log);
    int st = th_wait_exit(pid, 30000);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "lockbench exit status 0x%x", st);
    FILE *f = fopen(log, "r");
    ck_assert_ptr_nonnull(f);
    char line[2048];
    result[0] = '\0';
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "RESULT ", 7) == 0)
            snprintf(result, len, "%s", line);
    fclose(f);
    fprintf(stderr, "it_lockbench: %s", result);
    ck_assert_msg(result[0] != '\0', "no RESULT line");
}

/* Runs lockbench with bad flags: exit 2 and a message that names the flag. */
static void bad_flags(char *const argv[], const char *want)
{
    char log[300], out[4096];
    snprintf(log, sizeof log, "%s/badflag.log", th_tmpdir());
    pid_t pid = th_spawn(argv, log);
    int st = th_wait_exit(pid, 10000);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 2, "%s: exit status 0x%x", argv[1], st);
    FILE *f = fopen(log, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = '\0';
    fclose(f);
    ck_assert_msg(strstr(out, want) != NULL, "want '%s' in: %s", want, out);
}

START_TEST(test_lockbench)
{
    th_redis redis[3] = {{0}};
    th_lockd a, b;
    char port_a[16], port_b[16], result[2048];
    it_redis_start_n(redis, 3);
    it_lockd_start(&a, redis, 3, IT_FAST_YAML);
    it_lockd_start(&b, redis, 3, IT_FAST_YAML);
    snprintf(port_a, sizeof port_a, "127.0.0.1:%d", a.port);
    snprintf(port_b, sizeof port_b, "127.0.0.1:%d", b.port);

    char *lb = (char *)th_bin("lockbench");
    bad_flags((char *[]){lb, "--server", port_a, "--clients", "lots", NULL}, "--clients 'lots'");
    bad_flags((char *[]){lb, "--server", port_a, "--duration", "0", NULL}, "--duration '0'");
    bad_flags((char *[]){lb, "--server", port_a, "--hold", "-1", NULL}, "--hold '-1'");
    bad_flags((char *[]){lb, "--clients", "4", NULL}, "--server is required");
    bad_flags((char *[]){lb, "--server", NULL}, "--server needs a value");

    run_bench((char *[]){(char *)th_bin("lockbench"), "--server", port_a, "--clients", "8",
                         "--duration", "2", "--mode", "uncontended", NULL},
              result, sizeof result);
    ck_assert(result_field(result, "cycles") > 0);
    ck_assert(result_field(result, "errors") == 0);
    ck_assert(result_field(result, "timeouts") == 0);

    run_bench((char *[]){(char *)th_bin("lockbench"), "--server", port_a, "--server2", port_b,
                         "--clients", "8", "--duration", "2", "--mode", "contended", "--hold", "1",
                         NULL},
              result, sizeof result);
    ck_assert(result_field(result, "cycles") > 0);
    ck_assert(result_field(result, "overlaps") == 0);
    ck_assert(result_field(result, "fence_violations") == 0);
    ck_assert(result_field(result, "errors") == 0);
}
END_TEST

int main(void)
{
    return it_main("lockbench", test_lockbench, 60, NULL);
}
