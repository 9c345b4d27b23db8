/*
 * lg_seatmap: the seat map of one performance, as the load generators read it (see the
 * header).
 */
#include "lg_seatmap.h"

#include <jansson.h>
#include <stdlib.h>

cm_rc lg_seatmap_parse(lg_seatmap *m, const char *body, size_t len)
{
    cm_rc rc = CM_ERR;
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *seats = json_object_get(root, "seats");
    size_t n = json_array_size(seats), i;
    json_t *s;
    if (!json_is_array(seats) || n == 0 || n > UINT32_MAX / 2)
        goto done;
    m->ids = calloc(n, sizeof(*m->ids));
    m->avail = calloc(n, sizeof(*m->avail));
    if (m->ids == NULL || m->avail == NULL)
        goto done;
    json_array_foreach(seats, i, s)
    {
        json_t *id = json_object_get(s, "id");
        if (!json_is_integer(id))
            goto done;
        m->ids[i] = json_integer_value(id);
        m->avail[i] = json_is_true(json_object_get(s, "available"));
    }
    m->n = n;
    rc = CM_OK;
done:
    json_decref(root);
    if (rc != CM_OK)
        lg_seatmap_clear(m);
    return rc;
}

void lg_seatmap_clear(lg_seatmap *m)
{
    free(m->ids);
    free(m->avail);
    m->ids = NULL;
    m->avail = NULL;
    m->n = 0;
}
