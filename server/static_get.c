/* static_get.c: the web feature browser's files (docs/WEB.md), served from
 * the web/ folder with no API key (CONTRACT 5).
 *
 *   GET /, /features/{i}, /encode, /model   web/index.html
 *       /search, /text, /saes/{id}[/features/{i}|/encode|/model|/text]
 *   GET /assets/{name}                      web/assets/{name}
 *
 * Which folder: web_root when set (start-up fails if it has no index.html);
 * otherwise the source tree's web/ when this binary runs from its meson
 * build folder, else PREFIX/share/saed/web (installed by `meson install`);
 * if neither exists the browser is not served (404) and saed says so once.
 *
 * Nothing outside the folder can be reached. libmicrohttpd hands the router a
 * percent-decoded path, so %2e%2e and %2f are already "." and "/" there: a
 * decoded path with more segments matches no route (404), and an asset name
 * is one segment of [A-Za-z0-9._-] that does not start with a dot (so never
 * "." or ".."; a %00 ends the decoded string, leaving an empty segment that
 * matches nothing). Files are opened relative to the folder's descriptor with
 * O_NOFOLLOW, so a symlink inside web/ (for example one pointing outside) is
 * refused rather than followed; only regular files up to STATIC_MAX_BYTES are
 * served. Every refusal is 404 not_found, saying no more than a missing file.
 *
 * Caching: ETag from the file's inode, size and modification time (no read
 * needed to answer a revalidation); If-None-Match answers 304. Cache-Control
 * no-cache: browsers revalidate every time, so a new release is never hidden
 * behind a cached old file. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "feature_routes.h"
#include "io/list.h"

/* Largest file served (the browser's files are a few tens of KB). */
#define STATIC_MAX_BYTES ((off_t)8 << 20)

/* The Content-Security-Policy of the HTML page: the browser loads nothing
 * but its own files and runs no inline script or style attribute. */
#define PAGE_CSP "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

/* Content types by file name extension; anything else is served as bytes. */
static const struct {
    const char *ext, *type;
} types[] = {
    {"html", "text/html; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"ico", "image/x-icon"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"txt", "text/plain; charset=utf-8"},
    {"woff2", "font/woff2"},
};

/* The content type of a file name. */
static const char *content_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot)
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (!strcasecmp(dot + 1, types[i].ext))
                return types[i].type;
    return "application/octet-stream";
}

/* Opens dir as the web root if it holds index.html; the descriptor, or -1. */
static int open_root(const char *dir)
{
    int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstatat(fd, "index.html", &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Whether this executable lies under the meson build folder it was built in. */
static bool running_from_build_tree(void)
{
    char exe[PATH_MAX], root[PATH_MAX];
    if (!realpath("/proc/self/exe", exe) || !realpath(SAED_BUILD_ROOT, root))
        return false;
    size_t n = strlen(root);
    return !strncmp(exe, root, n) && exe[n] == '/';
}

int static_init(struct saed_server *srv, sae_error *err)
{
    const char *conf = srv->cfg->web_root;
    const char *dir = NULL;
    int fd = -1;
    if (conf && *conf) {
        dir = conf;
        if ((fd = open_root(dir)) < 0)
            return sae_error_set(err, SAE_EINVAL,
                                 "web_root %s: not a folder holding index.html (%s)", dir,
                                 strerror(errno ? errno : ENOENT));
    } else {
        const char *first = SAED_SOURCE_WEB, *second = SAED_INSTALL_WEB;
        if (!running_from_build_tree()) {
            first = SAED_INSTALL_WEB;
            second = SAED_SOURCE_WEB;
        }
        if ((fd = open_root(first)) >= 0)
            dir = first;
        else if ((fd = open_root(second)) >= 0)
            dir = second;
    }
    if (fd < 0) {
        fprintf(stderr,
                "saed: warning: web browser not served: no web folder at %s or %s (set "
                "web_root)\n",
                SAED_INSTALL_WEB, SAED_SOURCE_WEB);
        return 0;
    }
    char real[PATH_MAX];
    srv->web_root = strdup(realpath(dir, real) ? real : dir);
    if (!srv->web_root) {
        close(fd);
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    }
    srv->web_fd = fd;
    fprintf(stderr, "saed: web browser from %s\n", srv->web_root);
    return 0;
}

void static_free(struct saed_server *srv)
{
    if (srv->web_fd >= 0)
        close(srv->web_fd);
    srv->web_fd = -1;
    free(srv->web_root);
    srv->web_root = NULL;
}

/* Whether the If-None-Match header lists etag (or is "*"); weak validators
 * compare by their opaque part, as RFC 9110 has it for If-None-Match. */
static bool etag_matches(const char *inm, const char *etag)
{
    size_t want = strlen(etag), n;
    const char *p;
    sae_list it = sae_list_of(inm);
    while (sae_list_next(&it, &p, &n)) {
        if (n == 1 && *p == '*')
            return true;
        if (n >= 2 && !strncmp(p, "W/", 2)) {
            p += 2;
            n -= 2;
        }
        if (n == want && !strncmp(p, etag, n))
            return true;
    }
    return false;
}

/* 404 for anything that is not a servable file. */
static enum MHD_Result not_found(struct saed_req *rq)
{
    return reply_error(rq, 404, "not_found", "no such file");
}

/* Serves `name` relative to folder descriptor dir (no symlinks). */
static enum MHD_Result serve_file(struct saed_req *rq, int dir, const char *name, bool page)
{
    int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return not_found(rq);
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > STATIC_MAX_BYTES) {
        close(fd);
        return not_found(rq);
    }
    char etag[96];
    snprintf(etag, sizeof etag, "\"%llx-%llx-%llx.%lx\"", (unsigned long long)st.st_ino,
             (unsigned long long)st.st_size, (unsigned long long)st.st_mtim.tv_sec,
             (long)st.st_mtim.tv_nsec);
    const char *inm =
        MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    bool fresh = inm && etag_matches(inm, etag);
    size_t len = fresh ? 0 : (size_t)st.st_size;
    char *buf = malloc(len ? len : 1);
    if (!buf) {
        close(fd);
        return reply_error(rq, 503, "out_of_memory", "cannot read a %zu-byte file", len);
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, buf + got, len - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got != len) {
        /* Truncated while being read: better no file than half of one. */
        free(buf);
        return reply_error(rq, 503, "file_changed", "the file changed while being read; retry");
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(buf);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    if (!fresh) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type(name));
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        if (page) {
            MHD_add_response_header(resp, "Content-Security-Policy", PAGE_CSP);
            MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
        }
    }
    return reply_response(rq, fresh ? 304 : 200, resp, len);
}

/* GET /, /features/{i}, /encode, /model, /text, /search and the pages of one SAE
 * under /saes/{id} (any id: the page itself says when no SAE has it): the
 * browser's one page. Query
 * parameters are the browser's own state (?q=&sort=...), read by its
 * scripts, so they are ignored here. */
enum MHD_Result static_page_get(struct saed_req *rq)
{
    if (rq->srv->web_fd < 0)
        return reply_error(rq, 404, "not_found",
                           "the web feature browser is not served (no web folder; set web_root)");
    return serve_file(rq, rq->srv->web_fd, "index.html", true);
}

/* Whether name is a plain asset file name: [A-Za-z0-9._-], not starting with
 * a dot. */
static bool plain_name(const char *name)
{
    if (!*name || *name == '.')
        return false;
    for (const char *p = name; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* GET /assets/{name}. */
enum MHD_Result static_asset_get(struct saed_req *rq)
{
    if (rq->srv->web_fd < 0 || !plain_name(rq->args[0]))
        return not_found(rq);
    int dir = openat(rq->srv->web_fd, "assets", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir < 0)
        return not_found(rq);
    enum MHD_Result r = serve_file(rq, dir, rq->args[0], false);
    close(dir);
    return r;
}

/* A browser's request for a path no route has (GET with Accept: text/html,
 * outside the API's /v1/, /api/, /metrics and /openapi.json): an HTML "page
 * not found" linking to the browser, instead of the API's JSON 404. */
bool static_wants_html_404(struct saed_req *rq)
{
    if (strcmp(rq->method, "GET") && strcmp(rq->method, "HEAD"))
        return false;
    const char *p = rq->path;
    if (!strncmp(p, "/v1/", 4) || !strcmp(p, "/v1") || !strncmp(p, "/api/", 5) ||
        !strcmp(p, "/metrics") || !strcmp(p, "/openapi.json"))
        return false;
    const char *acc = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
    return acc && strstr(acc, "text/html");
}

enum MHD_Result static_html_404(struct saed_req *rq)
{
    static const char page[] =
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta name=\"color-scheme\" content=\"light dark\">"
        "<title>Page not found \xc2\xb7 saed</title>"
        "<link rel=\"stylesheet\" href=\"/assets/style.css\"></head>\n<body><main id=\"main\">"
        "<h1>Page not found</h1><p>saed has no page at this address.</p>"
        "<p><a href=\"/\">Browse the features</a> \xc2\xb7 <a href=\"/model\">Model</a></p>"
        "</main></body></html>\n";
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(sizeof page - 1, (void *)page, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Content-Security-Policy", PAGE_CSP);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    return reply_response(rq, 404, resp, sizeof page - 1);
}
