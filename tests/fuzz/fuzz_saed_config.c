/* fuzz_saed_config.c: saed's config file (server/config.c, config_load with
 * --config FILE), the key = value format of config/saed.conf.
 *
 * The input is the file. A file that loads must give a config that keeps
 * the rules config_load enforces (max_request_rows within max_queue_rows,
 * max_body_bytes below max_body_total_bytes, every string set); a refusal
 * must say why. config_free must release everything (LeakSanitizer). */
#include "config.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write("saed.conf", data, size);
    char *argv[] = {"saed", "--config", (char *)path, "--model", "/nonexistent-model", NULL};
    struct saed_config cfg;
    bool exit_now = false;
    sae_error err = {0};
    int rc = config_load(&cfg, 5, argv, &exit_now, &err);
    FUZZ_CHECK_ERR(rc, err);
    FUZZ_ASSERT(rc == 0 || rc == 1 || rc == 2, "status %d", rc);
    if (rc == 0) {
        FUZZ_ASSERT(!exit_now, "a config file printed help");
        FUZZ_ASSERT(cfg.max_request_rows <= cfg.max_queue_rows, "rows %llu > queue %llu",
                    (unsigned long long)cfg.max_request_rows,
                    (unsigned long long)cfg.max_queue_rows);
        FUZZ_ASSERT(cfg.max_body_bytes < cfg.max_body_total_bytes, "body caps");
        FUZZ_ASSERT(cfg.model && cfg.listen && cfg.api_key && cfg.cors_origins && cfg.web_root,
                    "a string left unset");
    }
    config_free(&cfg);
    return 0;
}
