/*
 * rs_seatpatch: a kept seat map, patched in place of a rebuild (contract in
 * rs_seatpatch.h).
 *
 * The index is found in the text itself: in rs_seatlist_text's output the bytes
 * "available": occur once per seat and nowhere else, because inside a JSON string every
 * quote is escaped (\") and the keys are fixed. Each state bit is kept twice, as wanted
 * and as written, so a render knows the length of the value it replaces.
 */
#include "rs_seatpatch.h"

#include <stdlib.h>
#include <string.h>

#define KEY_AVAIL "\"available\":"
#define KEY_HELD  ",\"held\":"

/* A seat's state byte: the wanted bits, and the same two bits as written in the text
 * shifted up by SP_WRITTEN_SHIFT. */
enum {
    SP_AVAIL = 1u << 0,
    SP_HELD = 1u << 1,
    SP_BITS = SP_AVAIL | SP_HELD,
    SP_WRITTEN_SHIFT = 2,
};

static uint8_t sp_state(bool available, bool held)
{
    return (uint8_t)((available ? SP_AVAIL : 0) | (held ? SP_HELD : 0));
}

/* A state whose wanted and written bits are both st's wanted ones. */
static uint8_t sp_written(uint8_t st)
{
    return (uint8_t)((st & SP_BITS) | (st & SP_BITS) << SP_WRITTEN_SHIFT);
}

/* "true" or "false" at s (n bytes left): 1, 0, or -1 for neither. */
static int read_bool(const char *s, size_t n)
{
    if (n >= 4 && memcmp(s, "true", 4) == 0)
        return 1;
    if (n >= 5 && memcmp(s, "false", 5) == 0)
        return 0;
    return -1;
}

static size_t bool_len(bool v)
{
    return v ? 4 : 5;
}

/* The seat's (available, held) values start at off: "B,\"held\":B". Sets *st to their
 * bits (wanted and written) and returns the bytes they take, or 0 when malformed. */
static size_t read_state(const char *body, size_t len, size_t off, uint8_t *st)
{
    int a = read_bool(body + off, len - off);
    if (a < 0)
        return 0;
    size_t p = off + bool_len(a);
    size_t kl = strlen(KEY_HELD);
    if (len - p < kl || memcmp(body + p, KEY_HELD, kl) != 0)
        return 0;
    p += kl;
    int h = read_bool(body + p, len - p);
    if (h < 0)
        return 0;
    *st = sp_written(sp_state(a, h));
    return p + bool_len(h) - off;
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

void rs_seatpatch_free(rs_seatpatch *m)
{
    rs_blob_unref(m->text);
    free(m->at);
    free(m->state);
    free(m->by_id);
    free(m->seat_of);
    memset(m, 0, sizeof(*m));
}

/* Fills by_id/seat_of from ids: sorted pairs (id, k) split into two arrays. */
static bool index_ids(rs_seatpatch *m, const int64_t *ids)
{
    int64_t *pairs = malloc(m->n * 2 * sizeof(*pairs) + 1);
    if (!pairs)
        return false;
    for (size_t k = 0; k < m->n; k++) {
        pairs[2 * k] = ids[k];
        pairs[2 * k + 1] = (int64_t)k;
    }
    qsort(pairs, m->n, 2 * sizeof(*pairs), cmp_id);
    bool ok = true;
    for (size_t i = 0; i < m->n; i++) {
        m->by_id[i] = pairs[2 * i];
        m->seat_of[i] = (uint32_t)pairs[2 * i + 1];
        if (i > 0 && m->by_id[i] == m->by_id[i - 1])
            ok = false; /* one seat twice: a set could not say which */
    }
    free(pairs);
    return ok;
}

bool rs_seatpatch_init(rs_seatpatch *m, rs_blob *text, const int64_t *ids, size_t n)
{
    memset(m, 0, sizeof(*m));
    m->n = n;
    m->text = rs_blob_ref(text); /* from here on dropped with m */
    const char *body = rs_blob_data(text);
    size_t len = rs_blob_len(text);
    if (len > UINT32_MAX || n > UINT32_MAX)
        goto fail;
    size_t cells = n ? n : 1;
    m->at = malloc(cells * sizeof(*m->at));
    m->state = malloc(cells * sizeof(*m->state));
    m->by_id = malloc(cells * sizeof(*m->by_id));
    m->seat_of = malloc(cells * sizeof(*m->seat_of));
    if (!m->at || !m->state || !m->by_id || !m->seat_of || !index_ids(m, ids))
        goto fail;
    size_t kl = strlen(KEY_AVAIL), k = 0;
    const char *p = body, *end = body + len;
    while ((p = memmem(p, (size_t)(end - p), KEY_AVAIL, kl)) != NULL) {
        if (k == n)
            goto fail; /* more states than seats */
        size_t off = (size_t)(p - body) + kl;
        size_t used = read_state(body, len, off, &m->state[k]);
        if (used == 0)
            goto fail;
        m->at[k++] = (uint32_t)off;
        p = body + off + used;
    }
    if (k != n)
        goto fail;
    return true;
fail:
    rs_seatpatch_free(m);
    return false;
}

bool rs_seatpatch_set(rs_seatpatch *m, int64_t id, bool available, bool held)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->by_id[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == m->n || m->by_id[lo] != id)
        return false;
    uint8_t *st = &m->state[m->seat_of[lo]];
    *st = (uint8_t)((*st & ~SP_BITS) | sp_state(available, held));
    if ((*st & SP_BITS) != *st >> SP_WRITTEN_SHIFT)
        m->dirty = true;
    return true;
}

static char *put(char *d, const char *s, size_t n)
{
    memcpy(d, s, n);
    return d + n;
}

static char *put_bool(char *d, bool v)
{
    return v ? put(d, "true", 4) : put(d, "false", 5);
}

bool rs_seatpatch_render(rs_seatpatch *m)
{
    if (!m->dirty)
        return true;
    /* A new text, not the old one changed: answers still being written may refer to the
     * old (rs_blob). Each seat's two values grow by one byte at most. */
    const char *body = rs_blob_data(m->text);
    size_t len = rs_blob_len(m->text);
    char *out = malloc(len + 2 * m->n + 1);
    rs_blob *text = out ? rs_blob_take(out, 0) : NULL;
    if (!text)
        return false;
    char *d = out;
    size_t src = 0, kl = strlen(KEY_HELD);
    for (size_t k = 0; k < m->n; k++) {
        uint8_t st = m->state[k], was = st >> SP_WRITTEN_SHIFT;
        /* the text up to this seat's values, then the values, then past the old ones */
        d = put(d, body + src, m->at[k] - src);
        src = (size_t)m->at[k] + bool_len(was & SP_AVAIL) + kl + bool_len(was & SP_HELD);
        m->at[k] = (uint32_t)(d - out);
        d = put_bool(d, st & SP_AVAIL);
        d = put(d, KEY_HELD, kl);
        d = put_bool(d, st & SP_HELD);
        m->state[k] = sp_written(st);
    }
    d = put(d, body + src, len - src);
    rs_blob_set_len(text, (size_t)(d - out));
    rs_blob_unref(m->text);
    m->text = text;
    m->dirty = false;
    return true;
}

size_t rs_seatpatch_bytes(const rs_seatpatch *m)
{
    return rs_blob_len(m->text) +
           m->n * (sizeof(*m->at) + sizeof(*m->state) + sizeof(*m->by_id) + sizeof(*m->seat_of));
}
