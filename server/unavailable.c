/* unavailable.c: handlers for routes whose backing piece is not there.
 *
 * The feature routes (/v1/features..., /api/feature/...) need a feature
 * index (saed --index); without one they answer 404 no_index, as the
 * contract says. The web browser routes (GET /, GET /features/{i}) need the
 * static files of web/, which this build does not serve yet. */
#include "saed.h"

/* Every feature route without an index: 404 no_index. */
enum MHD_Result features_unavailable(struct saed_req *rq)
{
    return reply_error(rq, 404, "no_index",
                       "no feature index is loaded (start saed with --index FILE.db)");
}

/* The web browser routes: 404 until web/ is served. */
enum MHD_Result web_unavailable(struct saed_req *rq)
{
    return reply_error(rq, 404, "not_found",
                       "the web feature browser is not served by this build; the API is "
                       "described at /openapi.json");
}
