/* cdp_json: conversion between google.protobuf.Struct/Value (what clients
 * send) and jansson values (what cdp stores in Redis), plus the limits
 * enforced at the edge. */
#ifndef CDP_JSON_H
#define CDP_JSON_H

#include <jansson.h>
#include "google/protobuf/struct.pb-c.h"

/* Depth of a Struct: an empty or flat struct is 1; each nested struct or
 * list adds one. NULL has depth 0. */
int cdp_struct_depth(const Google__Protobuf__Struct *s);

/* The value of `key` in s (NULL s: none), or NULL. The last entry wins, as
 * protobuf's map semantics say. */
const Google__Protobuf__Value *cdp_struct_get(const Google__Protobuf__Struct *s, const char *key);

/* New reference to a JSON object equal to `s` (NULL gives an empty object).
 * Non-finite numbers become null. */
json_t *cdp_struct_to_json(const Google__Protobuf__Struct *s);
json_t *cdp_value_to_json(const Google__Protobuf__Value *v);

/* Newly allocated Struct/Value equal to `j` (an object for the Struct form).
 * Free with cdp_struct_free / cdp_value_free. NULL if j is not an object. */
Google__Protobuf__Struct *cdp_json_to_struct(const json_t *j);
Google__Protobuf__Value *cdp_json_to_value(const json_t *j);
void cdp_struct_free(Google__Protobuf__Struct *s);
void cdp_value_free(Google__Protobuf__Value *v);

#endif
