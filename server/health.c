/* health.c: GET /v1/health. {"status":"ok"} once a model is loaded (the
 * daemon only listens after the first load succeeds); while draining after
 * SIGTERM the router answers 503 shutting_down instead, so a load balancer
 * stops sending traffic. Never needs the API key. */
#include <string.h>

#include "saed.h"

/* GET /v1/health: {"status":"ok"}. */
enum MHD_Result health_get(struct saed_req *rq)
{
    static const char body[] = "{\"status\":\"ok\"}\n";
    return reply_static(rq, 200, "application/json", body, strlen(body), false);
}
