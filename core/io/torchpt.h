/* torchpt.h: PyTorch zip checkpoints (torch.save >= 1.6) of a state_dict.
 *
 * The archive (core/io/zipmap.h) holds <prefix>/data.pkl, a pickle of the
 * dict, and one member <prefix>/data/<key> per storage. data.pkl is run by
 * the restricted unpickler (core/io/pickle.h), which never executes
 * anything; the result must be a dict (or OrderedDict) with string keys.
 *
 * Into a sae_st_file (format "torch"):
 * - tensors: one per entry whose value is a tensor (or nn.Parameter), named
 *   by its key, in pickle order. Storages of F32, F16, BF16, F64, I64, I32,
 *   I16, I8, U8 and BOOL; C-contiguous tensors only; a storage's member must
 *   hold exactly numel x itemsize bytes, little-endian (a `byteorder` record
 *   other than "little" is refused). Data points into the mapping (torch
 *   aligns members to 64 bytes) or into the first tensor's owned copy when a
 *   member had to be read (deflated); tensors sharing a storage share it.
 * - metadata: every other value (int, float, str, bool, None, list, nested
 *   dict) as key -> its JSON text, nested dict keys joined with '.': OpenAI
 *   sparse_autoencoder's {"activation": "TopK", "activation_state_dict":
 *   {"k": 32}} gives activation = "\"TopK\"" and activation_state_dict.k =
 *   "32" (strings keep their JSON quotes); an empty nested dict gives "{}".
 *
 * Refused by name, each with a message saying what the file is: the legacy
 * (non-zip) torch.save format, old tar checkpoints, TorchScript archives,
 * a dictionary_learning trainer backup (keys step/optimizer), an lm-saes
 * checkpoint ({"sae": state_dict, ...}), any pickle that is not a dict of
 * tensors and plain values, and every opcode or global outside the
 * unpickler's whitelist. */
#ifndef SAE_TORCHPT_H
#define SAE_TORCHPT_H

#include <stddef.h>
#include <stdint.h>

#include "io/error.h"
#include "io/safetensors.h"

/* Metadata: nested dicts and lists deeper than this are refused, and so is
 * a walk of more values than SAE_PT_MAX_VALUES (values may be shared through
 * the pickle memo: a tuple of two references to a tuple of two ... would
 * otherwise expand exponentially). */
#define SAE_PT_MAX_DEPTH 32
#define SAE_PT_MAX_VALUES 100000

/* Maps path and reads it with sae_pt_parse; *out owns the mapping. */
int sae_pt_open(const char *path, sae_st_file **out, sae_error *err);

/* Reads the checkpoint buf[0..len) (borrowed, must outlive *out); `name`
 * prefixes every message. */
int sae_pt_parse(const char *name, const uint8_t *buf, size_t len, sae_st_file **out,
                 sae_error *err);

#endif
