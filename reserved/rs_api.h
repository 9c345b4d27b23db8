/*
 * rs_api: the catalogue side of the booking API (SPEC §6): venues, performances (create,
 * read, patch, keyset-paginated search), the route of seat maps (rs_seatmap answers it),
 * /healthz and /metrics.
 */
#ifndef RS_API_H
#define RS_API_H

#include <stddef.h>
#include "rs_app.h"
#include "rs_http.h"

extern const rs_route rs_api_routes[];
extern const size_t rs_api_nroutes;
/* GET /metrics alone, open to anyone who can reach metrics_listen. */
extern const rs_route rs_api_metrics_routes[];
extern const size_t rs_api_metrics_nroutes;

void rs_api_register(rs_db *db);

#endif
