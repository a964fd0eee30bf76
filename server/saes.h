/* saes.h: the SAEs one saed serves (CONTRACT 7): what the config and the
 * --release walk name, the registry requests look ids up in, the reload
 * that touches only what changed, and the max_mapped_bytes budget.
 *
 * Lifetimes: a struct saed_sae, once made, lives until the process exits
 * (a reload that drops an SAE only stops serving it and releases its
 * snapshot), so requests, snapshots and metrics borrow SAEs without
 * references. The served list (order, default) is swapped whole under a
 * rwlock that readers hold for a lookup only. */
#ifndef SAED_SAES_H
#define SAED_SAES_H

#include <stdbool.h>
#include <stddef.h>

#include "saed.h"

/* A new, empty registry with the given mapped-weights budget (0: none). */
int saes_new(uint64_t max_mapped_bytes, struct saed_saes **out, sae_error *err);
/* Frees every SAE, releasing their snapshots (at exit, no request left). */
void saes_free(struct saed_saes *r);

/* Makes the served set what cfg says (its SAEs, names and the --release
 * walk). At start-up (startup true) any SAE that fails to load is an error.
 * On reload, an SAE that fails keeps its previous version (a new one is left
 * out) and is counted and logged; SAEs whose folder, index and names did not
 * change are not touched. *failed counts the SAEs that failed. */
int saes_apply(struct saed_server *srv, const struct saed_config *cfg, bool startup,
               size_t *failed, sae_error *err);

/* The served SAE of that id (len bytes), or NULL. */
struct saed_sae *saes_find(struct saed_server *srv, const char *id, size_t len);
/* The SAE the unprefixed routes use. */
struct saed_sae *saes_default(struct saed_server *srv);
/* The served SAEs in serving order: a new array of borrowed pointers (free
 * it) and its length in *n; NULL with *n 0 out of memory. */
struct saed_sae **saes_list(struct saed_server *srv, size_t *n);
/* The SAE whose Neuronpedia source id is layer (CONTRACT 7), or NULL; with
 * one SAE, that one (the route then checks the layer as CONTRACT 6 says). */
struct saed_sae *saes_by_source(struct saed_server *srv, const char *layer);
/* The source id snap answers the Neuronpedia route with: its source_id or
 * neuronpedia_id's part after '/', else with several SAEs its id, else its
 * hook_name. Borrowed from snap. */
const char *saes_source_id(struct saed_server *srv, const struct saed_snap *snap);
/* The SAE's index as loaded (a new reference, or NULL without one), even
 * while its weights are unmapped. */
struct saed_ix *saes_ix(struct saed_sae *sae);
/* Largest d_in and d_sae of the SAEs loaded so far (workspaces are sized
 * for them). */
void saes_max_dims(struct saed_server *srv, size_t *d_in, size_t *d_sae);

#endif
