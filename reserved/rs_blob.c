/*
 * rs_blob: see rs_blob.h.
 */
#include "rs_blob.h"

#include <assert.h>
#include <stdlib.h>

struct rs_blob {
    char *data;
    size_t len;
    size_t refs;
};

rs_blob *rs_blob_take(char *data, size_t len)
{
    rs_blob *b = malloc(sizeof(*b));
    if (!b) {
        free(data);
        return NULL;
    }
    b->data = data;
    b->len = len;
    b->refs = 1;
    return b;
}

void rs_blob_set_len(rs_blob *b, size_t len)
{
    assert(b->refs == 1);
    b->len = len;
}

rs_blob *rs_blob_ref(rs_blob *b)
{
    assert(b->refs > 0);
    b->refs++;
    return b;
}

void rs_blob_unref(rs_blob *b)
{
    if (!b)
        return;
    assert(b->refs > 0);
    if (--b->refs > 0)
        return;
    free(b->data);
    free(b);
}

const char *rs_blob_data(const rs_blob *b)
{
    return b->data;
}

size_t rs_blob_len(const rs_blob *b)
{
    return b->len;
}
