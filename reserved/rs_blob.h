/*
 * rs_blob: bytes that never change once made, shared by reference count between their
 * keeper (a kept seat map) and the answers still being written from them. An answer
 * refers to the bytes instead of copying them (rs_reply_blob): a large hall's map is
 * megabytes, and the copy with its fresh pages was about a quarter of reserved's CPU in
 * the booking benchmark's mixed shape (perf). Single-threaded, like the rest of reserved.
 */
#ifndef RS_BLOB_H
#define RS_BLOB_H

#include <stddef.h>

typedef struct rs_blob rs_blob;

/* Takes data (malloc'd, len bytes) into a new blob with one reference. NULL when out of
 * memory: data is freed then. */
rs_blob *rs_blob_take(char *data, size_t len);
/* Sets the length of a blob whose bytes its maker is still writing: before any other
 * reference to it exists (asserted), at most the bytes allocated. */
void rs_blob_set_len(rs_blob *b, size_t len);
/* Another reference to b; returns b. */
rs_blob *rs_blob_ref(rs_blob *b);
/* Drops a reference; the last one frees the bytes. NULL is ignored. */
void rs_blob_unref(rs_blob *b);
const char *rs_blob_data(const rs_blob *b);
size_t rs_blob_len(const rs_blob *b);

#endif
