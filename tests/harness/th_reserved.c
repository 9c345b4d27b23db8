/*
 * th_reserved: see th_reserved.h.
 */
#include "th_reserved.h"

#include <check.h>
#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "th.h"
#include "th_http.h"

#define TH_RESERVED_START_MS 30000 /* migrations on a fresh database included */
#define TH_RESERVED_MAX_ARGS 32

/* One default of the test config: section.key: value. */
typedef struct th_default {
    const char *section;
    const char *key;
    const char *value;
} th_default;

static const th_default defaults[] = {
    {"auth", "hash_ops", "1"},
    {"auth", "hash_mem_kib", "8"},
    {"limits", "rate_per_token", "{per_s: 0}"},
    {"limits", "rate_per_ip", "{per_s: 0}"},
};
#define N_DEFAULTS (sizeof defaults / sizeof defaults[0])

static char admin_token[TH_TOKEN_LEN + 1];

/* Does yaml name key (as "key:") anywhere? Crude on purpose: a test that names the key
 * sets it itself. */
static bool names_key(const char *yaml, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = strstr(yaml, key); p != NULL; p = strstr(p + 1, key)) {
        bool starts = p == yaml || !(isalnum((unsigned char)p[-1]) || p[-1] == '_');
        if (starts && p[n] == ':')
            return true;
    }
    return false;
}

/* The start of the line "section:" at column 0, NULL when absent. */
static const char *section_line(const char *yaml, const char *section)
{
    size_t n = strlen(section);
    for (const char *line = yaml; line != NULL && *line != '\0';) {
        if (strncmp(line, section, n) == 0 && line[n] == ':')
            return line;
        line = strchr(line, '\n');
        line = line != NULL ? line + 1 : NULL;
    }
    return NULL;
}

/* Adds the missing keys of one section to *text (malloc'd, replaced). */
static void merge_section(char **text, const char *section)
{
    char items[256] = "", lines[256] = "", indent[32] = "  ";
    for (size_t i = 0; i < N_DEFAULTS; i++) {
        if (strcmp(defaults[i].section, section) != 0 || names_key(*text, defaults[i].key))
            continue;
        size_t il = strlen(items), ll = strlen(lines);
        snprintf(items + il, sizeof items - il, "%s%s: %s", il ? ", " : "", defaults[i].key,
                 defaults[i].value);
        snprintf(lines + ll, sizeof lines - ll, "%%s%s: %s\n", defaults[i].key, defaults[i].value);
    }
    if (items[0] == '\0')
        return;
    const char *head = section_line(*text, section);
    size_t len = strlen(*text);
    char *out = malloc(len + 2 * sizeof items + 64);
    ck_assert_ptr_nonnull(out);
    if (head == NULL) {
        sprintf(out, "%s%s%s: {%s}\n", *text, len > 0 && (*text)[len - 1] != '\n' ? "\n" : "",
                section, items);
    } else {
        const char *after = head + strlen(section) + 1;
        while (*after == ' ' || *after == '\t')
            after++;
        if (*after == '{') {
            /* a flow section: the keys go first inside its braces, on the same line */
            const char *inner = after + 1;
            while (*inner == ' ')
                inner++;
            sprintf(out, "%.*s%s%s%s", (int)(after + 1 - *text), *text, items,
                    *inner == '}' ? "" : ", ", after + 1);
        } else {
            /* a block section: one line per key after its head, at its keys' indent */
            const char *next = strchr(head, '\n');
            next = next != NULL ? next + 1 : *text + len;
            size_t w = strspn(next, " ");
            if (w > 0 && w < sizeof indent)
                snprintf(indent, sizeof indent, "%.*s", (int)w, next);
            char block[512] = "";
            for (const char *l = lines; *l != '\0';) {
                const char *e = strchr(l, '\n');
                size_t bl = strlen(block);
                snprintf(block + bl, sizeof block - bl, "%s%.*s\n", indent, (int)(e - l - 2),
                         l + 2);
                l = e + 1;
            }
            sprintf(out, "%.*s%s%s%s", (int)(next - *text), *text,
                    next == *text + len && len > 0 && (*text)[len - 1] != '\n' ? "\n" : "", block,
                    next);
        }
    }
    free(*text);
    *text = out;
}

char *th_reserved_merge_yaml(const char *yaml)
{
    char *text = strdup(yaml != NULL ? yaml : "");
    ck_assert_ptr_nonnull(text);
    merge_section(&text, "auth");
    merge_section(&text, "limits");
    return text;
}

/* yaml merged with the defaults, written to a fresh file; its path in path. */
static void write_config(char *path, size_t pathlen, const char *yaml)
{
    snprintf(path, pathlen, "%s/reserved.yaml", th_tmpdir());
    char *text = th_reserved_merge_yaml(yaml);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    free(text);
}

/* The whole of a small file (malloc'd); fails the test when it cannot be read. */
static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    for (size_t got; (got = fread(buf + len, 1, cap - len - 1, f)) > 0;) {
        len += got;
        if (len + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

static void spawn_argv(th_reserved *s, const char *conninfo, char **extra, size_t n_extra)
{
    char *args[TH_RESERVED_MAX_ARGS];
    char config[512];
    size_t n = 0;
    bool has_config = false;
    if (conninfo != NULL) {
        args[n++] = "--database";
        args[n++] = (char *)conninfo;
    }
    for (size_t i = 0; i < n_extra && n < TH_RESERVED_MAX_ARGS; i++) {
        args[n++] = extra[i];
        if (strcmp(extra[i], "--config") == 0 && i + 1 < n_extra && n < TH_RESERVED_MAX_ARGS) {
            char *yaml = read_all(extra[++i]);
            write_config(config, sizeof config, yaml);
            free(yaml);
            args[n++] = config;
            has_config = true;
        }
    }
    if (!has_config && n + 2 <= TH_RESERVED_MAX_ARGS) {
        write_config(config, sizeof config, NULL);
        args[n++] = "--config";
        args[n++] = config;
    }
    th_server_spawn(s, "reserved", args, n);
    ck_assert_msg(s->pid > 0, "cannot spawn reserved");
}

void th_reserved_spawn(th_reserved *s, const char *conninfo, ...)
{
    char *extra[TH_RESERVED_MAX_ARGS];
    va_list ap;
    va_start(ap, conninfo);
    size_t n = th_va_args(ap, extra, TH_RESERVED_MAX_ARGS - 2);
    va_end(ap);
    spawn_argv(s, conninfo, extra, n);
}

void th_reserved_spawn_yaml(th_reserved *s, const char *yaml)
{
    char path[512];
    write_config(path, sizeof path, yaml);
    char *extra[] = {"--config", path};
    /* already merged: spawn_argv's merge finds every key named and changes nothing */
    spawn_argv(s, NULL, extra, 2);
}

void th_reserved_wait_up(th_reserved *s)
{
    if (!th_server_wait_up(s, TH_RESERVED_START_MS)) {
        th_dump_log(s->log, 40);
        ck_abort_msg("reserved did not listen on %d", s->port);
    }
}

void th_reserved_start(th_reserved *s, const char *conninfo)
{
    th_reserved_spawn(s, conninfo, "--lock-mode", "db", "--log-level", "debug", NULL);
    th_reserved_wait_up(s);
}

void th_reserved_stop_clean(th_reserved *s)
{
    th_server_stop_clean(s, 15000);
}

static int run_argv(const char *input, char *out, size_t outlen, char **args, size_t n_args)
{
    char *argv[TH_RESERVED_MAX_ARGS + 2];
    char log[512], in[512];
    size_t n = 0;
    argv[n++] = (char *)th_bin("reserved");
    for (size_t i = 0; i < n_args && n < TH_RESERVED_MAX_ARGS; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    const char *dir = th_tmpdir();
    snprintf(log, sizeof log, "%s/cli.log", dir);
    if (input != NULL) {
        snprintf(in, sizeof in, "%s/stdin", dir);
        FILE *f = fopen(in, "w");
        ck_assert_ptr_nonnull(f);
        fputs(input, f);
        fclose(f);
    }
    pid_t pid = th_spawn_stdin(argv, log, input != NULL ? in : NULL);
    int st = th_wait_exit(pid, 10000);
    ck_assert_msg(st != -1, "reserved %s did not exit", argv[1]);
    FILE *f = fopen(log, "r");
    size_t got = f ? fread(out, 1, outlen - 1, f) : 0;
    out[got] = '\0';
    if (f)
        fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* run_argv on a NULL-terminated list of arguments. */
static int run_va(const char *input, char *out, size_t outlen, va_list ap)
{
    char *args[TH_RESERVED_MAX_ARGS];
    size_t n = th_va_args(ap, args, TH_RESERVED_MAX_ARGS);
    return run_argv(input, out, outlen, args, n);
}

int th_reserved_run(char *out, size_t outlen, ...)
{
    va_list ap;
    va_start(ap, outlen);
    int rc = run_va(NULL, out, outlen, ap);
    va_end(ap);
    return rc;
}

int th_reserved_run_stdin(const char *input, char *out, size_t outlen, ...)
{
    va_list ap;
    va_start(ap, outlen);
    int rc = run_va(input, out, outlen, ap);
    va_end(ap);
    return rc;
}

long long th_reserved_add_admin(const char *conninfo, const char *email, const char *password)
{
    char config[512], input[256], out[16384];
    write_config(config, sizeof config, NULL);
    snprintf(input, sizeof input, "%s\n", password);
    int rc = th_reserved_run_stdin(input, out, sizeof out, "--config", config, "--database",
                                   conninfo, "--add-admin", email, NULL);
    ck_assert_msg(rc == 0, "reserved --add-admin %s: exit %d: %s", email, rc, out);
    /* stdout (the id, a line of digits) and stderr (log lines) share the file */
    for (const char *line = out; line != NULL && *line != '\0';) {
        size_t digits = strspn(line, "0123456789");
        if (digits > 0 && (line[digits] == '\n' || line[digits] == '\0'))
            return atoll(line);
        line = strchr(line, '\n');
        line = line != NULL ? line + 1 : NULL;
    }
    ck_abort_msg("reserved --add-admin %s printed no id: %s", email, out);
    return -1;
}

const char *th_reserved_admin(th_reserved *s, const char *conninfo)
{
    th_reserved_add_admin(conninfo, TH_ADMIN_EMAIL, TH_PASSWORD);
    th_login(s->port, TH_ADMIN_EMAIL, TH_PASSWORD, admin_token);
    th_http_set_bearer(admin_token);
    return admin_token;
}

const char *th_admin_token(void)
{
    return admin_token;
}

/* A POST of a JSON body built by jansson (stolen) with no bearer; the answer in r. */
static void post_public(int port, const char *path, json_t *body, th_http_resp *r)
{
    char *text = json_dumps(body, JSON_COMPACT);
    ck_assert_ptr_nonnull(text);
    th_http_request_as(port, NULL, "POST", path, NULL, text, r);
    free(text);
    json_decref(body);
}

long long th_login(int port, const char *email, const char *password, char token[TH_TOKEN_LEN + 1])
{
    th_http_resp r;
    post_public(port, "/sessions", json_pack("{s:s,s:s}", "email", email, "password", password),
                &r);
    ck_assert_msg(r.status == 201, "POST /sessions as %s: %d %s", email, r.status, r.body);
    const char *t = th_http_str(&r, "token");
    long long id = th_http_int(&r, "userId");
    ck_assert_msg(strlen(t) == TH_TOKEN_LEN && id > 0, "POST /sessions as %s: %s", email, r.body);
    memcpy(token, t, TH_TOKEN_LEN + 1);
    th_http_resp_free(&r);
    return id;
}

long long th_signup(int port, const char *name, const char *email, char token[TH_TOKEN_LEN + 1])
{
    th_http_resp r;
    post_public(port, "/users",
                json_pack("{s:s,s:s,s:s}", "name", name, "email", email, "password", TH_PASSWORD),
                &r);
    ck_assert_msg(r.status == 201, "POST /users %s: %d %s", email, r.status, r.body);
    long long id = th_http_int(&r, "id");
    th_http_resp_free(&r);
    if (token != NULL)
        ck_assert_int_eq(th_login(port, email, TH_PASSWORD, token), id);
    return id;
}
