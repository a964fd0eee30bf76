/* list.h: the one comma-separated list reader of the house: saed's config
 * values (cors_origins), HTTP header lists (Accept, If-None-Match), the
 * include= query value, and sae's --layers all walk their items here.
 *
 *     sae_list it = sae_list_of(s);
 *     const char *item; size_t n;
 *     while (sae_list_next(&it, &item, &n)) ...
 *
 * Items are trimmed of spaces and tabs; an empty item ("a,,b", "a,") is
 * yielded with length 0 and the caller decides whether that is an error. An
 * empty or NULL string is an empty list. */
#ifndef SAE_LIST_H
#define SAE_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct sae_list {
    const char *rest; /* what follows the last item read; NULL once at the end */
} sae_list;

sae_list sae_list_of(const char *s);

/* The next item as a pointer into the string and its length (not
 * NUL-terminated); false when the list is done. */
bool sae_list_next(sae_list *it, const char **item, size_t *len);

#endif
