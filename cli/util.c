/* util.c: error printing, the output-is-not-an-input check and the progress
 * line. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io/clock.h"
#include "cli.h"

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("sae: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return SAE_EXIT_FAILURE;
}

int cli_fail_err(const sae_error *err)
{
    return cli_fail("%s", err->msg[0] ? err->msg : "unknown error");
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sae %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see 'sae %s --help')\n", cmd);
    va_end(ap);
    return SAE_EXIT_USAGE;
}

void cli_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("sae: warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_check_not_input(const char *cmd, const char *out, const char *const *inputs, size_t n)
{
    struct stat so, si;
    if (!out || stat(out, &so))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (inputs[i] && !stat(inputs[i], &si) && si.st_dev == so.st_dev &&
            si.st_ino == so.st_ino)
            return cli_usage(cmd, "--out %s is also an input (%s); write elsewhere", out,
                             inputs[i]);
    return -1;
}

void cli_progress_start(cli_progress *p, const char *label, const char *unit, uint64_t total,
                        bool quiet)
{
    p->label = label;
    p->unit = unit;
    p->total = total;
    p->quiet = quiet;
    p->tty = isatty(STDERR_FILENO);
    p->t_start = p->t_last = sae_clock_s();
}

static void progress_print(cli_progress *p, uint64_t done, bool final)
{
    double t = sae_clock_s() - p->t_start;
    double rate = t > 0 ? done / t : 0;
    char eta[32] = "?";
    if (p->total && rate > 0) {
        double left = (p->total > done ? p->total - done : 0) / rate;
        snprintf(eta, sizeof eta, "%dm%02ds", (int)(left / 60), (int)fmod(left, 60));
    }
    if (!p->total) { /* the total is not known: the count and the rate only */
        fprintf(stderr, p->tty ? "\r%s: %llu %s, %.0f %s/s, %.1fs%s" : "%s: %llu %s, %.0f %s/s, %.1fs%s\n",
                p->label, (unsigned long long)done, p->unit, rate, p->unit, t,
                p->tty && final ? "\n" : "");
        return;
    }
    if (p->tty) {
        int width = 30, fill = p->total ? (int)((double)done / p->total * width) : 0;
        if (fill > width)
            fill = width;
        fprintf(stderr, "\r%s [%.*s%*s] %llu/%llu %s  %.0f %s/s  ETA %s%s", p->label, fill,
                "##############################", width - fill, "", (unsigned long long)done,
                (unsigned long long)p->total, p->unit, rate, p->unit, eta, final ? "\n" : "");
    } else {
        fprintf(stderr, "%s: %llu/%llu %s, %.0f %s/s, ETA %s, %.1fs elapsed\n", p->label,
                (unsigned long long)done, (unsigned long long)p->total, p->unit, rate, p->unit,
                final ? "0m00s" : eta, t);
    }
}

void cli_progress_update(cli_progress *p, uint64_t done)
{
    if (p->quiet)
        return;
    double now = sae_clock_s();
    if (now - p->t_last < (p->tty ? 0.2 : 5.0))
        return;
    p->t_last = now;
    progress_print(p, done, false);
}

void cli_progress_finish(cli_progress *p, uint64_t done)
{
    if (!p->quiet)
        progress_print(p, done, true);
}
