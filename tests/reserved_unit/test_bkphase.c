/*
 * test_bkphase: the booking phase table (rs_bkphase.h): the moves the pipeline makes are
 * legal, shortcuts are not, every phase can end in ANSWERED and nothing leaves it, an
 * illegal move aborts (Check forks the test; it must die of SIGABRT), and every move is
 * logged at debug level.
 */
#include <check.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cm_log.h"
#include "rs_bkphase.h"
#include "ru_suites.h"

/* One booking's walk through the table, as rs_bk and rs_booking make it. */
static const rs_bk_phase paths[][12] = {
    /* lockd mode, key, gateway, early BEGIN done before the grant, committed, answered */
    {BK_NEW, BK_IDEM_LOOKUP, BK_RECORDING, BK_QUEUED, BK_QUEUED_LEASING, BK_QUEUED_BEGINNING,
     BK_QUEUED_IN_TXN, BK_IN_TXN, BK_CHARGING, BK_IN_TXN, BK_COMMITTING, BK_ANSWERED},
    /* declined: rolled back, the attempt marked, the failure stored under the key */
    {BK_NEW, BK_RECORDING, BK_QUEUED, BK_LEASING, BK_BEGINNING, BK_IN_TXN, BK_CHARGING, BK_IN_TXN,
     BK_UNWINDING, BK_COMPENSATING, BK_STORING, BK_ANSWERED},
    /* refused while the early BEGIN was out */
    {BK_NEW, BK_RECORDING, BK_QUEUED, BK_QUEUED_LEASING, BK_QUEUED_BEGINNING, BK_REFUSED_BEGINNING,
     BK_UNWINDING, BK_COMPENSATING, BK_ANSWERED},
    /* granted while the early BEGIN was out, which then failed: a new lease */
    {BK_NEW, BK_QUEUED, BK_QUEUED_LEASING, BK_QUEUED_BEGINNING, BK_GRANTED_BEGINNING, BK_LEASING,
     BK_BEGINNING, BK_IN_TXN, BK_COMMITTING, BK_ANSWERED},
    /* group booking: in a batch, charged, declined (taken back in the batch's
     * transaction), the attempt marked, the failure stored under the key */
    {BK_NEW, BK_IDEM_LOOKUP, BK_RECORDING, BK_BATCHED, BK_BATCH_CHARGING, BK_BATCHED,
     BK_COMPENSATING, BK_STORING, BK_ANSWERED},
    /* in a batch without a gateway, committed */
    {BK_NEW, BK_BATCHED, BK_ANSWERED},
    /* a cancellation in db mode, refunded */
    {BK_NEW, BK_HEAD, BK_LEASING, BK_BEGINNING, BK_IN_TXN, BK_COMMITTING, BK_COMPENSATING,
     BK_ANSWERED},
};

START_TEST(test_paths)
{
    for (size_t p = 0; p < sizeof(paths) / sizeof(paths[0]); p++) {
        rs_bk_phase cur = paths[p][0];
        for (size_t i = 1; i < 12 && paths[p][i] != BK_NEW; i++) {
            ck_assert_msg(rs_bk_phase_legal(cur, paths[p][i]), "path %zu: %s -> %s", p,
                          rs_bk_phase_name(cur), rs_bk_phase_name(paths[p][i]));
            rs_bk_phase_move(&cur, paths[p][i], "booking", p);
            ck_assert_int_eq(cur, paths[p][i]);
        }
        ck_assert_int_eq(cur, BK_ANSWERED);
    }
}
END_TEST

/* Shortcuts that would skip a step the pipeline depends on. */
START_TEST(test_illegal)
{
    static const rs_bk_phase bad[][2] = {
        {BK_NEW, BK_IN_TXN},               /* a transaction without lock and BEGIN */
        {BK_QUEUED, BK_BEGINNING},         /* a connection nobody leased */
        {BK_QUEUED_IN_TXN, BK_COMMITTING}, /* commit without the lock */
        {BK_CHARGING, BK_COMMITTING},      /* commit before the gateway answered */
        {BK_CHARGING, BK_UNWINDING},       /* roll back with the charge still out */
        {BK_UNWINDING, BK_IN_TXN},         /* back into a rolled-back transaction */
        {BK_COMMITTING, BK_UNWINDING},     /* ROLLBACK after COMMIT was sent */
        {BK_STORING, BK_COMPENSATING},     /* compensate after the final record */
        {BK_ANSWERED, BK_ANSWERED},        /* answered twice */
        {BK_LEASING, BK_QUEUED},           /* give the lock back to queue again */
        {BK_HEAD, BK_BATCHED},             /* cancellations are not batched */
        {BK_BATCHED, BK_IN_TXN},           /* a member never runs a transaction of its own */
        {BK_BATCH_CHARGING, BK_ANSWERED},  /* answered with its charge still out */
        {BK_QUEUED, BK_BATCHED},           /* queued alone: no joining later */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(!rs_bk_phase_legal(bad[i][0], bad[i][1]), "%s -> %s is legal",
                      rs_bk_phase_name(bad[i][0]), rs_bk_phase_name(bad[i][1]));
}
END_TEST

/* Spreads mark along legal moves until nothing changes: forward marks the phases a
 * marked one can move to, backward the phases that can move to a marked one. */
static void spread(bool mark[BK_NPHASES], bool forward)
{
    for (bool changed = true; changed;) {
        changed = false;
        for (int f = 0; f < BK_NPHASES; f++) {
            for (int t = 0; t < BK_NPHASES; t++) {
                int known = forward ? f : t, found = forward ? t : f;
                if (mark[known] && !mark[found] && rs_bk_phase_legal(f, t)) {
                    mark[found] = true;
                    changed = true;
                }
            }
        }
    }
}

/* Every phase can reach ANSWERED; ANSWERED leads nowhere; every phase but NEW can be
 * reached from NEW; names are distinct. */
START_TEST(test_shape)
{
    bool reach[BK_NPHASES] = {false};
    reach[BK_NEW] = true;
    spread(reach, true);
    for (int p = 0; p < BK_NPHASES; p++)
        ck_assert_msg(reach[p], "%s cannot be reached", rs_bk_phase_name(p));
    bool ends[BK_NPHASES] = {false};
    ends[BK_ANSWERED] = true;
    spread(ends, false);
    for (int p = 0; p < BK_NPHASES; p++) {
        ck_assert_msg(ends[p], "%s never ends in answered", rs_bk_phase_name(p));
        ck_assert(!rs_bk_phase_legal(BK_ANSWERED, p));
        ck_assert_str_ne(rs_bk_phase_name(p), "?");
        for (int q = p + 1; q < BK_NPHASES; q++)
            ck_assert_str_ne(rs_bk_phase_name(p), rs_bk_phase_name(q));
    }
    ck_assert(rs_bk_phase_has_conn(BK_QUEUED_IN_TXN));
    ck_assert(rs_bk_phase_has_conn(BK_UNWINDING));
    ck_assert(!rs_bk_phase_has_conn(BK_LEASING));
    ck_assert(!rs_bk_phase_has_conn(BK_COMPENSATING));
}
END_TEST

/* An illegal move aborts (assert): Check expects this test to die of SIGABRT. A build
 * without assertions (NDEBUG: release builds) has nothing to check here. */
START_TEST(test_illegal_move_aborts)
{
    if (RU_ABORT_SIGNAL == 0)
        return;
    cm_log_set_level(CM_LOG_ERROR);
    rs_bk_phase p = BK_NEW;
    rs_bk_phase_move(&p, BK_COMMITTING, "booking", 1);
}
END_TEST

/* Every move is one debug line: "booking 7: queued -> leasing". */
START_TEST(test_move_logged)
{
    char path[] = "/tmp/bkphase_logXXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    int saved = dup(STDERR_FILENO);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
    cm_log_set_level(CM_LOG_DEBUG);
    rs_bk_phase p = BK_QUEUED;
    rs_bk_phase_move(&p, BK_LEASING, "booking", 7);
    cm_log_set_level(CM_LOG_INFO);
    rs_bk_phase_move(&p, BK_BEGINNING, "booking", 7); /* not at info */
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char buf[512] = "";
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    unlink(path);
    ck_assert_int_gt(n, 0);
    ck_assert_msg(strstr(buf, "booking 7: queued -> leasing") != NULL, "log: %s", buf);
    ck_assert_msg(strstr(buf, "leasing -> beginning") == NULL, "log: %s", buf);
}
END_TEST

/* A local table: Check's TTest pointers are not constants. */
Suite *ru_bkphase_suite(void)
{
    const ru_case cases[] = {
        {"bkphase_paths", test_paths, 0},
        {"bkphase_illegal", test_illegal, 0},
        {"bkphase_shape", test_shape, 0},
        {"bkphase_illegal_move_aborts", test_illegal_move_aborts, RU_ABORT_SIGNAL},
        {"bkphase_move_logged", test_move_logged, 0},
    };
    return ru_suite("bkphase", cases, sizeof(cases) / sizeof(cases[0]));
}
