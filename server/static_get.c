/* static_get.c: the web feature browser's files (docs/WEB.md), served from
 * the web/ folder with no API key (CONTRACT 5).
 *
 *   GET /, /features/{i}, /encode, /model   web/index.html, its asset
 *       /search, /text, /saes/{id}[/features/{i}|/encode|/model|/text]
 *                                           addresses versioned
 *   GET /assets/{name}                      web/assets/{name}
 *   GET /assets/v-{version}/{name}          the same file, cached for a year
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
 * matches nothing); a version segment is "v-" and anything, and names no
 * file. Files are opened relative to the folder's descriptor with
 * O_NOFOLLOW, so a symlink inside web/ (for example one pointing outside) is
 * refused rather than followed; only regular files up to STATIC_MAX_BYTES are
 * served. Every refusal is 404 not_found, saying no more than a missing file.
 *
 * Loading (docs/WEB.md "Loading"). Files come from memory with their gzip
 * (web_cache.h: each request still opens the file, and a changed one is read
 * again), gzip-compressed when the client accepts it (Vary:
 * Accept-Encoding). The version of web/assets is a hash over its files'
 * contents; index.html is sent with every "/assets/ address rewritten to
 * "/assets/v-VERSION/, and since the modules import one another by relative
 * paths, the whole browser then loads from the versioned prefix. A file asked
 * for under the current version is sent with Cache-Control: public,
 * max-age=31536000, immutable (a change to any file gives a new version, so
 * a new page); under any other version, unversioned, and index.html itself,
 * no-cache: the browser revalidates, so a new release is never hidden behind
 * a cached old file. ETags are the content hash (".gz" added for the gzip
 * form); If-None-Match answers 304.
 *
 * Early fetches: where index.html holds the marker <!--saed:preload-->, the
 * page gets <link rel="preload" as="fetch" crossorigin> for the API requests
 * its scripts make first (preload_links), so they travel with the module
 * requests instead of after them. Same URL and credentials mode as
 * web/assets/api.js's fetch, so the browser uses the preloaded reply rather
 * than asking twice (tests/web/loading.test.mjs checks both). None when an
 * API key is configured (the preload carries no key). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "buf.h"
#include "feature_routes.h"
#include "io/list.h"
#include "saes.h"
#include "web_cache.h"

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
    if (!(srv->web_cache = web_cache_new())) {
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
    web_cache_free(srv->web_cache);
    srv->web_cache = NULL;
}

/* The folders' tags in the cache. */
enum { FOLDER_ROOT, FOLDER_ASSETS };

/* How long a versioned file may be kept: a year, the customary ceiling. */
#define CACHE_IMMUTABLE "public, max-age=31536000, immutable"

/* The page marker replaced by the early fetches' <link> elements. */
#define PRELOAD_MARKER "<!--saed:preload-->"

/* Rows per page of the feature list: web/assets/page-features.js's PAGE_SIZE,
 * which its first request asks for. */
#define LIST_PAGE_SIZE 50

/* Whether the If-None-Match header lists the tag "hash" or "hash.gz" (or is
 * "*"); weak validators compare by their opaque part, as RFC 9110 has it for
 * If-None-Match. */
static bool etag_matches(const char *inm, const char *hash)
{
    char plain[24], gz[28];
    snprintf(plain, sizeof plain, "\"%s\"", hash);
    snprintf(gz, sizeof gz, "\"%s.gz\"", hash);
    size_t n;
    const char *p;
    sae_list it = sae_list_of(inm);
    while (sae_list_next(&it, &p, &n)) {
        if (n == 1 && *p == '*')
            return true;
        if (n >= 2 && !strncmp(p, "W/", 2)) {
            p += 2;
            n -= 2;
        }
        if ((n == strlen(plain) && !strncmp(p, plain, n)) || (n == strlen(gz) && !strncmp(p, gz, n)))
            return true;
    }
    return false;
}

/* 404 for anything that is not a servable file. */
static enum MHD_Result not_found(struct saed_req *rq)
{
    return reply_error(rq, 404, "not_found", "no such file");
}

/* Whether this request takes gzip: the client accepts it and gzip is on. */
static bool takes_gzip(struct saed_req *rq)
{
    return rq->accept_gzip && rq->srv->cfg->gzip;
}

/* Queues file f (its body taken) of content type `type` with its validators
 * and Cache-Control `cache`, or 304 when If-None-Match names it; page: the
 * HTML page's own headers too. */
static enum MHD_Result send_file(struct saed_req *rq, struct web_file *f, const char *type,
                                 const char *cache, bool page)
{
    const char *inm =
        MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    bool fresh = inm && etag_matches(inm, f->hash);
    if (fresh) {
        web_file_free(f);
        f->len = 0;
    }
    struct MHD_Response *resp =
        fresh ? MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT)
              : MHD_create_response_from_buffer(f->len, f->body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        web_file_free(f);
        return MHD_NO;
    }
    char etag[32];
    snprintf(etag, sizeof etag, "\"%s%s\"", f->hash, f->gzip ? ".gz" : "");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, cache);
    if (f->has_gzip && rq->srv->cfg->gzip)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Accept-Encoding");
    if (!fresh) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        if (f->gzip)
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
        if (page) {
            MHD_add_response_header(resp, "Content-Security-Policy", PAGE_CSP);
            MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
        }
    }
    return reply_response(rq, fresh ? 304 : 200, resp, f->len);
}

/* The answer to a web_cache_get failure. */
static enum MHD_Result read_failed(struct saed_req *rq, int rc)
{
    if (rc == -1)
        return not_found(rq);
    return reply_error(rq, 503, "file_changed",
                       "the file changed while being read, or memory ran out; retry");
}

/* The web/assets folder (no symlink), or -1. */
static int assets_dir(struct saed_server *srv)
{
    return openat(srv->web_fd, "assets", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* Whether s (len bytes) is a feature index as page-feature.js writes it in
 * its request: digits, no leading zero, short enough to be a Number. */
static bool canonical_index(const char *s, size_t len)
{
    if (!len || len > 15 || (s[0] == '0' && len > 1))
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* Appends one preload <link> of API path `path` to b. */
static void preload_link(struct saed_buf *b, const char *path)
{
    buf_puts(b, "<link rel=\"preload\" as=\"fetch\" crossorigin href=\"");
    buf_puts(b, path);
    buf_puts(b, "\">\n");
}

/* The early fetches of this page request, appended to b: the API requests
 * the page's scripts make first, byte for byte as they write them:
 *   every page                   /v1/saes (app.js's header, router.js's scope check)
 *   /, /saes/{id}                the first page of the list in index order
 *                                (page-features.js's apiPathOf with no query)
 *   /features/{i}, /saes/{id}/features/{i}   /v1/model and the feature (page-feature.js)
 * with /saes/{id}/ after /v1 for an SAE's pages. Only for a page address
 * without a query (its request depends on the query), an id of plain
 * characters (what encodeURIComponent leaves as it is) that names a served
 * SAE, a canonical index, and no API key. */
static void preload_links(struct saed_req *rq, struct saed_buf *b)
{
    if (*rq->srv->cfg->api_key ||
        MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND, NULL, NULL) > 0)
        return;
    const char *route = rq->route->path;
    bool scoped = !strncmp(route, "/saes/{id}", 10);
    bool list = !strcmp(route, "/") || !strcmp(route, "/saes/{id}");
    bool feature = !strcmp(route, "/features/{i}") || !strcmp(route, "/saes/{id}/features/{i}");
    char api[SAED_MAX_ARG_LEN + 64];
    if (scoped) {
        const char *id = rq->args[0];
        if (!web_plain_name(id) || !saes_find(rq->srv, id, strlen(id)))
            return;
        snprintf(api, sizeof api, "/v1/saes/%s", id);
    } else {
        snprintf(api, sizeof api, "/v1");
    }
    const char *i = feature ? rq->args[scoped ? 1 : 0] : NULL;
    if (feature && !canonical_index(i, strlen(i)))
        return;
    char path[sizeof api + SAED_MAX_ARG_LEN + 96]; /* api, a feature index (an argument), a query */
    preload_link(b, "/v1/saes");
    if (list) {
        snprintf(path, sizeof path, "%s/features?sort=index&order=asc&limit=%d&offset=0", api,
                 LIST_PAGE_SIZE);
        preload_link(b, path);
    } else if (feature) {
        snprintf(path, sizeof path, "%s/model", api);
        preload_link(b, path);
        snprintf(path, sizeof path, "%s/features/%s", api, i);
        preload_link(b, path);
    }
}

/* index.html (src, len bytes) as this request gets it: "/assets/ addresses
 * under "/assets/v-VERSION/ (version NULL: as written) and the marker
 * replaced by the early fetches; into b. */
static void render_page(struct saed_req *rq, const char *src, size_t len, const char *version,
                        struct saed_buf *b)
{
    static const char asset[] = "\"/assets/", marker[] = PRELOAD_MARKER;
    const char *p = src, *end = src + len;
    while (p < end) {
        const char *a = memmem(p, (size_t)(end - p), asset, sizeof asset - 1);
        const char *m = memmem(p, (size_t)(end - p), marker, sizeof marker - 1);
        const char *next = a && (!m || a < m) ? a : m;
        if (!next) {
            buf_put(b, p, (size_t)(end - p));
            break;
        }
        buf_put(b, p, (size_t)(next - p));
        if (next == a) {
            buf_put(b, asset, sizeof asset - 1);
            if (version) {
                buf_puts(b, "v-");
                buf_puts(b, version);
                buf_putc(b, '/');
            }
            p = a + sizeof asset - 1;
        } else {
            preload_links(rq, b);
            p = m + sizeof marker - 1;
        }
    }
}

/* GET /, /features/{i}, /encode, /model, /text, /search and the pages of one SAE
 * under /saes/{id} (any id: the page itself says when no SAE has it): the
 * browser's one page, rendered for this address (render_page). Query
 * parameters are the browser's own state (?q=&sort=...), read by its
 * scripts, so they are ignored here but for the early fetches. */
enum MHD_Result static_page_get(struct saed_req *rq)
{
    struct saed_server *srv = rq->srv;
    if (srv->web_fd < 0)
        return reply_error(rq, 404, "not_found",
                           "the web feature browser is not served (no web folder; set web_root)");
    struct web_file f;
    int rc = web_cache_get(srv->web_cache, FOLDER_ROOT, srv->web_fd, "index.html",
                           STATIC_MAX_BYTES, false, &f);
    if (rc)
        return read_failed(rq, rc);
    char version[17];
    int dir = assets_dir(srv);
    bool versioned =
        dir >= 0 && !web_cache_version(srv->web_cache, FOLDER_ASSETS, dir, STATIC_MAX_BYTES, version);
    if (dir >= 0)
        close(dir);
    struct saed_buf b;
    buf_init(&b, (size_t)STATIC_MAX_BYTES * 2, f.len + 1024);
    render_page(rq, f.body, f.len, versioned ? version : NULL, &b);
    web_file_free(&f);
    if (b.failed) {
        buf_free(&b);
        return reply_error(rq, 503, "out_of_memory", "cannot render the page");
    }
    struct web_file page = {0};
    page.body = buf_steal(&b, &page.len);
    snprintf(page.hash, sizeof page.hash, "%016llx",
             (unsigned long long)XXH3_64bits(page.body, page.len));
    char *z;
    size_t zl;
    if (srv->cfg->gzip) {
        page.has_gzip = true;
        if (takes_gzip(rq) && !reply_gzip(page.body, page.len, 6, &z, &zl)) {
            free(page.body);
            page.body = z;
            page.len = zl;
            page.gzip = true;
        }
    }
    return send_file(rq, &page, "text/html; charset=utf-8", "no-cache", true);
}

/* GET /assets/{name} and /assets/v-{version}/{name}. */
enum MHD_Result static_asset_get(struct saed_req *rq)
{
    struct saed_server *srv = rq->srv;
    bool versioned = rq->n_args == 2;
    const char *name = rq->args[rq->n_args - 1];
    if (srv->web_fd < 0 || !web_plain_name(name) ||
        (versioned && strncmp(rq->args[0], "v-", 2)))
        return not_found(rq);
    int dir = assets_dir(srv);
    if (dir < 0)
        return not_found(rq);
    char now[17];
    bool current = versioned &&
                   !web_cache_version(srv->web_cache, FOLDER_ASSETS, dir, STATIC_MAX_BYTES, now) &&
                   !strcmp(rq->args[0] + 2, now);
    struct web_file f;
    int rc = web_cache_get(srv->web_cache, FOLDER_ASSETS, dir, name, STATIC_MAX_BYTES,
                           takes_gzip(rq), &f);
    close(dir);
    if (rc)
        return read_failed(rq, rc);
    return send_file(rq, &f, content_type(name), current ? CACHE_IMMUTABLE : "no-cache", false);
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
