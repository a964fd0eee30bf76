/* list.c: comma-separated lists (list.h). */
#include "io/list.h"

#include <string.h>

sae_list sae_list_of(const char *s)
{
    return (sae_list){.rest = s && *s ? s : NULL};
}

bool sae_list_next(sae_list *it, const char **item, size_t *len)
{
    const char *p = it->rest;
    if (!p)
        return false;
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    it->rest = comma ? comma + 1 : NULL;
    while (n && (*p == ' ' || *p == '\t')) {
        p++;
        n--;
    }
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    *item = p;
    *len = n;
    return true;
}
